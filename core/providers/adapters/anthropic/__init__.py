"""Kind `anthropic`: the Anthropic Messages API (POST {base_url}/v1/messages).

The adapter object only wires the pieces: request.py builds the body, response.py and stream.py
translate answers back, errors.py classifies failures, settings.py owns the provider options.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import orjson

from core.providers.adapters.anthropic.errors import parse_error
from core.providers.adapters.anthropic.request import build_body
from core.providers.adapters.anthropic.response import parse_message
from core.providers.adapters.anthropic.settings import Settings, parse_settings
from core.providers.adapters.anthropic.stream import AnthropicStreamParser
from core.providers.adapters.base import (
    JSON,
    Capabilities,
    ProviderError,
    Target,
    UpstreamRequest,
    settings_of,
)
from core.providers.adapters.cache_support import anthropic_support
from core.wire.prompt_cache import prepare
from core.wire.sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder
from shared.config import ProviderConfig

if TYPE_CHECKING:
    from core.providers.provider import Provider

__all__ = ["ADAPTER", "AnthropicAdapter", "AnthropicStreamParser"]

# Top-level OpenAI params this adapter maps; n, seed, logprobs and penalties have no equivalent.
PARAMS = frozenset(
    {
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "user",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "reasoning_effort",
    }
)
MAX_CONTEXT = 200_000


class AnthropicAdapter:
    kind = "anthropic"

    def settings(self, provider: Provider) -> Settings:
        """Parsed once at start-up (core/providers/provider.py) and kept on the provider."""
        return settings_of(provider, Settings)

    def check_provider(self, provider: ProviderConfig) -> object:
        return parse_settings(provider)

    def capabilities(self, target: Target) -> Capabilities:
        settings = self.settings(target.provider)
        return Capabilities(
            json_schema=settings.structured_outputs,
            json_object=False,
            max_context=MAX_CONTEXT,
            image_urls=True,
            params=PARAMS,
            prompt_cache=anthropic_support(target.model),
        )

    def decoder(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> SSEDecoder:
        return SSEDecoder(max_event_bytes)

    def make_signer(self, settings: object) -> None:
        return None

    def build_request(self, canonical: JSON, target: Target) -> UpstreamRequest:
        settings = self.settings(target.provider)
        # Client marks kept within the model's limits (core.wire.prompt_cache), in position.
        canonical, _ = prepare(canonical, anthropic_support(target.model))
        body = build_body(canonical, target.model, settings)
        headers = dict(settings.headers)
        headers["accept"] = "text/event-stream" if body.get("stream") else "application/json"
        if target.api_key:
            headers["x-api-key"] = target.api_key.reveal()
        return UpstreamRequest("POST", settings.url, headers, orjson.dumps(body))

    def parse_response(self, body: bytes, target: Target) -> JSON:
        return parse_message(body, target)

    def stream_parser(self, canonical: JSON, target: Target) -> AnthropicStreamParser:
        return AnthropicStreamParser(target)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        return parse_error(status, headers, body)


ADAPTER = AnthropicAdapter()
