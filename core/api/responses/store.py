"""Stored responses: `store`, `previous_response_id`, GET and DELETE /v1/responses/{id}.

A response is kept when the request did not say `store: false` (OpenAI's default is true, and
clients such as agents rely on `previous_response_id` without setting it), for `ttl_s` (30
days by default, as OpenAI keeps them), under a key scoped to the tenant: another tenant's id
is simply not found, the same 404 as an id that never existed, so ids reveal nothing across
tenants. Where is the response cache's seam (core.cache.backend): Redis itself when configured
(shared by every replica; while it is down a lookup finds nothing and nothing is kept, never a
503 and never entries piling up in a per-process fallback), else this process's memory, an LRU
bounded by MEMORY_MAX_BYTES in all.

An entry holds the response object and the conversation's items so far (the earlier turns'
items, this request's input, this response's output), so a request naming it as
`previous_response_id` continues the conversation on any provider: the items are placed before
its own input (core.api.responses.request), and an entry never points at another, so a turn
costs one GET whatever the conversation's length. An entry over `max_bytes` is not kept (the
response says `store: false`), which bounds what one tenant can park in Redis per response.
Deleting writes an empty tombstone for the rest of the TTL (the seam has no delete).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from core.cache.backend import Backend
from core.pipeline.exchange import Exchange
from core.providers.adapters.base import JSON
from shared.errors import GatewayError

DEFAULT_TTL_S = 30 * 24 * 3600.0
DEFAULT_MAX_BYTES = 1024 * 1024
MEMORY_MAX_BYTES = 128 * 1024 * 1024  # every tenant's stored responses, without Redis
_STATE = "responses_history"  # request.state attribute: the previous response's items


def _key(tenant: str, response_id: str) -> str:
    """Tenant first, length-prefixed: no tenant name can make another tenant's key."""
    return f"interlock:responses:{len(tenant)}:{tenant}:{response_id}"


def not_found(response_id: str, param: str | None = None) -> GatewayError:
    shown = response_id[:64].encode("unicode_escape").decode("ascii")
    return GatewayError(
        404, f"no response with id '{shown}' was found", param=param, code="not_found"
    )


class ResponseStore:
    """The tenant-scoped store of responses (see the module docstring)."""

    __slots__ = ("max_bytes", "store", "ttl_s")

    def __init__(
        self, store: Backend, ttl_s: float = DEFAULT_TTL_S, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes

    async def load(self, tenant: str, response_id: str) -> JSON | None:
        raw = await self.store.get(_key(tenant, response_id))
        if not raw:  # missing, expired, or deleted (the empty tombstone)
            return None
        entry = orjson.loads(raw)
        return entry if isinstance(entry, dict) else None

    async def save(self, tenant: str, response: JSON, items: list[Any]) -> bool:
        """Keeps the response and the conversation's items; False when over max_bytes (the
        answer is still served: keeping it is best effort)."""
        body = orjson.dumps({"response": response, "items": items})
        if len(body) > self.max_bytes:
            return False
        await self.store.set(_key(tenant, response["id"]), body, self.ttl_s)
        return True

    async def delete(self, tenant: str, response_id: str) -> bool:
        if await self.load(tenant, response_id) is None:
            return False
        await self.store.set(_key(tenant, response_id), b"", self.ttl_s)
        return True


def history_of(http: Request) -> list[Any] | None:
    """The previous response's items, as the history stage left them for validate."""
    items: list[Any] | None = getattr(http.state, _STATE, None)
    return items


class History:
    """A pipeline stage for /v1/responses, after read: a `previous_response_id` is looked up
    (one GET) and its items left on the request for validate; an unknown id (or another
    tenant's) is a 404 naming the field."""

    name = "history"

    def __init__(self, responses: ResponseStore) -> None:
        self._responses = responses

    async def __call__(self, x: Exchange[Any, Any, Any]) -> None:
        previous = x.payload.get("previous_response_id")
        if previous is None:
            return
        if not isinstance(previous, str) or not previous:
            raise GatewayError(
                400,
                "previous_response_id: must be a non-empty string",
                param="previous_response_id",
                code="invalid_type",
            )
        entry = await self._responses.load(x.caller.tenant, previous)
        items = entry.get("items") if entry is not None else None
        if not isinstance(items, list):
            raise not_found(previous, "previous_response_id")
        setattr(x.http.state, _STATE, items)
