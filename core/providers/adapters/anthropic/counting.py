"""Anthropic's own count: `POST {base_url}/v1/messages/count_tokens` with the client's request
as it wrote it (core.providers.adapters.anthropic.client_request), its answer relayed as the
upstream's bytes (it may carry more than `input_tokens`, such as `context_management`)."""

from __future__ import annotations

from collections.abc import Mapping

from core.providers.adapters.anthropic.client_request import client_request
from core.providers.adapters.anthropic.errors import parse_error
from core.providers.adapters.anthropic.settings import Settings
from core.providers.adapters.base import ProviderError, Target, UpstreamRequest, settings_of
from core.providers.adapters.counting import Counted, CountInput, reply_count


class AnthropicCounter:
    __slots__ = ()

    def problem(self, target: Target) -> str | None:
        return None  # every Messages model counts

    def build(self, request: CountInput, target: Target) -> UpstreamRequest:
        settings = settings_of(target.provider, Settings)
        url = f"{settings.url}/count_tokens"
        sent = (request.payload, request.raw)
        return client_request(target, settings, sent, request.client_headers, (url, JSON_MEDIA))

    def parse(self, body: bytes, target: Target) -> Counted:
        return Counted(reply_count(body, "input_tokens"), body)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        return parse_error(status, headers, body)


JSON_MEDIA = "application/json"
ANTHROPIC_COUNTER = AnthropicCounter()
