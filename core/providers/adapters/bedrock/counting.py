"""Bedrock's own count: `CountTokens` (`POST /model/{id}/count-tokens`, signed like every
Bedrock call), with the Converse translation of the request (messages, system prompt, tool
config; core.providers.adapters.bedrock.request) under `input.converse`. The answer is
`{"inputTokens": N}`. Bedrock counts only for Anthropic's Claude models (by model id, an
inference profile such as `us.anthropic.claude-...` or an ARN naming one): other models are
passed over when planning, never sent a count they would refuse.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from core.providers.adapters.base import ProviderError, Target, UpstreamRequest
from core.providers.adapters.bedrock.adapter import JSON_MEDIA, request_headers
from core.providers.adapters.bedrock.errors import parse_http_error
from core.providers.adapters.bedrock.options import base_url
from core.providers.adapters.bedrock.request import converse_body, operation_url
from core.providers.adapters.counting import Counted, CountInput, reply_count

COUNTING_MODELS = "anthropic.claude"  # what a model id that Bedrock counts contains
# The Converse fields CountTokens takes (the output's settings change nothing of the input).
COUNTED = ("messages", "system", "toolConfig")


class BedrockCounter:
    __slots__ = ()

    def problem(self, target: Target) -> str | None:
        if COUNTING_MODELS in target.model:
            return None
        return f"{target.label}: Bedrock counts tokens for Anthropic Claude models only"

    def build(self, request: CountInput, target: Target) -> UpstreamRequest:
        if request.canonical is None:
            raise ValueError("a Bedrock count needs the canonical translation")  # a wiring bug
        body = converse_body(request.canonical)
        converse = {key: body[key] for key in COUNTED if key in body}
        url = operation_url(base_url(target.provider), target.model, "count-tokens")
        payload = orjson.dumps({"input": {"converse": converse}})
        return UpstreamRequest("POST", url, request_headers(target, JSON_MEDIA), payload)

    def parse(self, body: bytes, target: Target) -> Counted:
        return Counted(reply_count(body, "inputTokens"))

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        return parse_http_error(status, headers, body)


BEDROCK_COUNTER = BedrockCounter()
