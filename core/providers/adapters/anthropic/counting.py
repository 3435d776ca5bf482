"""Anthropic's own count: `POST {base_url}/v1/messages/count_tokens`. A Messages request is sent
as the client wrote it (core.providers.adapters.anthropic.client_request); a request of another
API (the Responses API's count) is translated from its canonical form as for a Message, and
only what is counted is sent. Anthropic's answer is relayed as its bytes to a Messages client
(it may carry more than `input_tokens`, such as `context_management`)."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from core.providers.adapters.anthropic.client_request import client_request, request_headers
from core.providers.adapters.anthropic.errors import parse_error
from core.providers.adapters.anthropic.request import build_body
from core.providers.adapters.anthropic.settings import Settings
from core.providers.adapters.base import ProviderError, Target, UpstreamRequest, settings_of
from core.providers.adapters.counting import Counted, CountInput, reply_count

JSON_MEDIA = "application/json"
# The Messages fields Anthropic's count takes (the output's settings change nothing of it).
COUNTED = ("model", "messages", "system", "tools", "tool_choice", "thinking")


class AnthropicCounter:
    __slots__ = ()

    def problem(self, target: Target) -> str | None:
        return None  # every Messages model counts

    def build(self, request: CountInput, target: Target) -> UpstreamRequest:
        settings = settings_of(target.provider, Settings)
        url = f"{settings.url}/count_tokens"
        if request.api == "anthropic":
            sent = (request.payload, request.raw)
            return client_request(target, settings, sent, request.client_headers, (url, JSON_MEDIA))
        if request.canonical is None:
            raise ValueError("a translated count needs the canonical form")  # a wiring bug
        body = build_body(request.canonical, target.model, settings)
        counted = orjson.dumps({key: body[key] for key in COUNTED if key in body})
        headers = request_headers(target, settings, {}, JSON_MEDIA)
        return UpstreamRequest("POST", url, headers, counted)

    def parse(self, body: bytes, target: Target) -> Counted:
        return Counted(reply_count(body, "input_tokens"), body)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        return parse_error(status, headers, body)

    def refused(self, error: ProviderError) -> bool:
        return False  # the provider counts for every model it serves


ANTHROPIC_COUNTER = AnthropicCounter()
