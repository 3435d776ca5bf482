"""The bedrock adapter: Converse and ConverseStream, signed with SigV4 after the pure build."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import lru_cache

import orjson

from core.providers.adapters.base import (
    JSON,
    Capabilities,
    ProviderError,
    Target,
    UpstreamRequest,
    as_settings,
)
from core.providers.adapters.bedrock.errors import parse_http_error
from core.providers.adapters.bedrock.options import BedrockOptions, base_url, parse_options
from core.providers.adapters.bedrock.request import converse_body, model_url
from core.providers.adapters.bedrock.response import parse_converse
from core.providers.adapters.bedrock.signing import SigV4Signer, make_signer
from core.providers.adapters.bedrock.stream import ConverseStreamParser
from core.providers.adapters.cache_support import bedrock_support
from core.wire.eventstream import EventStreamDecoder
from core.wire.prompt_cache import CacheSupport, prepare
from core.wire.sse import DEFAULT_MAX_EVENT_BYTES
from shared.config import ProviderConfig

# Every top-level OpenAI param this adapter maps; the core rejects or drops the rest.
PARAMS = frozenset(
    {
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "tools",
        "tool_choice",
        "response_format",
    }
)
# Converse takes image bytes only: the core inlines remote image URLs before calling us.
CAPABILITIES = Capabilities(image_urls=False, params=PARAMS)


@lru_cache(maxsize=16)
def _cached_capabilities(support: CacheSupport) -> Capabilities:
    return replace(CAPABILITIES, prompt_cache=support)


EVENT_STREAM = "application/vnd.amazon.eventstream"
JSON_MEDIA = "application/json"


def request_headers(target: Target, accept: str) -> dict[str, str]:
    """A JSON request's headers: the provider's own, and a Bedrock API key as a bearer token
    (SigV4 signs the rest, after this pure build)."""
    headers = {"content-type": JSON_MEDIA, "accept": accept, **target.provider.headers}
    if target.api_key:
        headers["authorization"] = f"Bearer {target.api_key.reveal()}"
    return headers


class BedrockAdapter:
    kind = "bedrock"

    def check_provider(self, provider: ProviderConfig) -> object:
        return parse_options(provider)

    def capabilities(self, target: Target) -> Capabilities:
        support = bedrock_support(target.model)
        return CAPABILITIES if support is None else _cached_capabilities(support)

    def decoder(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> EventStreamDecoder:
        return EventStreamDecoder(max_event_bytes)

    def make_signer(self, settings: object) -> SigV4Signer | None:
        options = as_settings(settings, BedrockOptions)
        if options.bearer:
            return None  # a Bedrock API key is a bearer token: no SigV4
        return make_signer(options)

    def build_request(self, canonical: JSON, target: Target) -> UpstreamRequest:
        stream = bool(canonical.get("stream"))
        headers = request_headers(target, EVENT_STREAM if stream else JSON_MEDIA)
        url = model_url(base_url(target.provider), target.model, stream)
        # Client marks become cachePoint blocks where the model takes them (else removed).
        canonical, _ = prepare(canonical, bedrock_support(target.model))
        return UpstreamRequest("POST", url, headers, orjson.dumps(converse_body(canonical)))

    def parse_response(self, body: bytes, target: Target) -> JSON:
        return parse_converse(body, target.model)

    def stream_parser(self, canonical: JSON, target: Target) -> ConverseStreamParser:
        return ConverseStreamParser(target.model)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        return parse_http_error(status, headers, body)


ADAPTER = BedrockAdapter()
