"""What makes two requests the same answer, and what the client asked of the cache.

The key is the tenant (hash-tagged, so a tenant's entries share a Redis slot and no two tenants
ever share a key) plus a digest of the canonical request: orjson with sorted keys of the API,
the resolved route, the API-affecting client headers and the payload without the fields that
do not change the answer. Left out (IGNORED): `model` (the route stands for it, so aliases of
one route share entries), `stream` and `stream_options` (a stream and a complete answer are
the same entry), and the bookkeeping fields `user`, `metadata`, `store`, `service_tier`,
`prompt_cache_key` and `safety_identifier`. Everything else (messages, system, tools,
tool_choice, sampling, response_format, n, seed, max_tokens ...) is part of the key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from shared.errors import GatewayError

IGNORED = frozenset(
    (
        "model",
        "stream",
        "stream_options",
        "user",
        "metadata",
        "store",
        "service_tier",
        "prompt_cache_key",
        "safety_identifier",
    )
)
PREFIX = "ilc"


def cache_key(
    tenant: str, api: str, route: str, payload: dict[str, Any], headers: dict[str, str]
) -> str:
    """`ilc:{<tenant digest>}:<request digest>`: the tenant's digest keeps odd tenant names
    (braces, colons) out of the key's structure and is the Redis hash tag."""
    request = {k: v for k, v in payload.items() if k not in IGNORED}
    canonical = orjson.dumps(
        {"api": api, "route": route, "headers": headers, "request": request},
        option=orjson.OPT_SORT_KEYS,
    )
    digest = hashlib.blake2b(canonical, digest_size=20).hexdigest()
    tag = hashlib.blake2b(tenant.encode(), digest_size=8).hexdigest()
    return f"{PREFIX}:{{{tag}}}:{digest}"


@dataclass(frozen=True, slots=True)
class Directives:
    """The request's Cache-Control: `no-store` (neither look up nor store), `no-cache` (do
    not answer from the cache, but store the fresh answer), `max-age=N` (accept an entry at
    most N seconds old). Unknown directives are ignored, as HTTP caches do."""

    no_store: bool = False
    no_cache: bool = False
    max_age: float | None = None


NONE = Directives()


def directives(header: str | None) -> Directives:
    """The parsed header; a malformed max-age is a 400 naming the header."""
    if not header:
        return NONE
    no_store = no_cache = False
    max_age: float | None = None
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        name = name.strip().lower()
        if name == "no-store":
            no_store = True
        elif name == "no-cache":
            no_cache = True
        elif name == "max-age":
            value = value.strip().strip('"')
            if not value.isdigit() or len(value) > 10:
                raise GatewayError(
                    400,
                    "the Cache-Control header's max-age must be a whole number of seconds",
                    param="Cache-Control",
                    code="invalid_cache_control",
                )
            max_age = float(value)
    return Directives(no_store, no_cache, max_age)
