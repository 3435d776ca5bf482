"""A request sent to Anthropic on a client's behalf, as the client wrote it (Messages
passthrough, count_tokens): only `model` is rewritten, and prompt-cache marks beyond the model's
limits removed (core.wire.prompt_cache); otherwise the client's own bytes leave. Headers: the
provider's static ones, the client's `anthropic-version` when it names one, the operator's beta
flags plus the client's (each once, the operator's first), and the key."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from core.providers.adapters.anthropic.settings import Settings
from core.providers.adapters.base import JSON, Target, UpstreamRequest
from core.providers.adapters.cache_support import anthropic_support
from core.wire.prompt_cache import prepare


def client_request(
    target: Target,
    settings: Settings,
    sent: tuple[JSON, bytes],
    client_headers: Mapping[str, str],
    url_accept: tuple[str, str],
) -> UpstreamRequest:
    """`sent`: the client's payload and its bytes; `url_accept`: where, and what to accept."""
    payload, raw = sent
    url, accept = url_accept
    prepared, dropped = prepare(payload, anthropic_support(target.model))
    if not dropped and payload["model"] == target.model:
        body = raw
    else:
        body = orjson.dumps({**(prepared if dropped else payload), "model": target.model})
    return UpstreamRequest(
        "POST", url, request_headers(target, settings, client_headers, accept), body
    )


def request_headers(
    target: Target, settings: Settings, client_headers: Mapping[str, str], accept: str
) -> dict[str, str]:
    headers = dict(settings.headers)
    version = client_headers.get("anthropic-version")
    if version:
        headers["anthropic-version"] = version
    beta = client_headers.get("anthropic-beta")
    if beta:
        flags = [f for f in headers.get("anthropic-beta", "").split(",") if f]
        flags += [f.strip() for f in beta.split(",") if f.strip() and f.strip() not in flags]
        headers["anthropic-beta"] = ",".join(flags)
    headers["accept"] = accept
    if target.api_key:
        headers["x-api-key"] = target.api_key.reveal()
    return headers
