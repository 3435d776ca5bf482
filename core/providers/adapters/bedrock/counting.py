"""Bedrock's own count: `CountTokens` (`POST /model/{id}/count-tokens`, signed like every
Bedrock call), with the Converse translation of the request (messages, system prompt, tool
config; core.providers.adapters.bedrock.request) under `input.converse`. The answer is
`{"inputTokens": N}`.

Which model is asked: CountTokens takes a foundation model id. It answers "The provided model
doesn't support counting tokens" for a cross-Region inference profile (`us.anthropic...`,
`global.anthropic...`) and for an ARN, though Converse needs the profile for the newer Claude
models; the profile's model tokenizes alike, so it is asked under its own id. An application
inference profile's ARN does not say its model: such targets cannot count.

Which models count: Anthropic's Claude models from Claude 3.5 on (AWS's table of models that
count lists Claude 3.5 Haiku, 3.5 Sonnet and v2, 3.7 Sonnet, Sonnet 4 and Opus 4, later ones
since; Claude 3 Haiku, Sonnet and Opus, Claude 2 and Instant are not in it). Other targets are
passed over when planning, never sent a count they would refuse.

Cache points are left out (stripped before translating): they change how input tokens are
billed, not how many there are, and a count must not fail on a cache point the model refuses.
The output's settings (`inferenceConfig`) change nothing of the input and are not sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import orjson

from core.providers.adapters.base import ProviderError, Target, UpstreamRequest
from core.providers.adapters.bedrock.adapter import JSON_MEDIA, request_headers
from core.providers.adapters.bedrock.errors import parse_http_error
from core.providers.adapters.bedrock.options import base_url
from core.providers.adapters.bedrock.request import converse_body, operation_url
from core.providers.adapters.counting import Counted, CountInput, reply_count
from core.wire.prompt_cache import strip
from shared.errors import FailureClass

# Bedrock's words when a model does not count (support varies by model and region).
NO_COUNT = "support counting tokens"
# The Converse fields CountTokens' `converse` input takes that the translation writes.
COUNTED = ("messages", "system", "toolConfig")
# A model id, or a system inference profile's (a geography: us., eu., apac., global. ...),
# naming a Claude model; group `base`: the foundation model's id.
_CLAUDE = re.compile(r"^(?:[a-z]+(?:-[a-z]+)?\.)?(?P<base>anthropic\.claude-[A-Za-z0-9.:-]+)$")
# The ARN of a foundation model or of a system inference profile; group `id`: its id.
_ARN = re.compile(
    r"^arn:aws[a-z-]*:bedrock:[a-z0-9-]+:\d*:(?:foundation-model|inference-profile)/(?P<id>.+)$"
)
# Claude models before 3.5, which CountTokens does not count.
_EARLIER = re.compile(r"^anthropic\.claude-(?:instant|v\d|3-(?:haiku|sonnet|opus))")


def counted_model(model: str) -> str | None:
    """The foundation model id CountTokens is asked for `model` (a model id, a system
    inference profile's id, or the ARN of either), or None when it names no Claude model."""
    arn = _ARN.match(model)
    found = _CLAUDE.match(arn["id"] if arn else model)
    return found["base"] if found else None


class BedrockCounter:
    __slots__ = ()

    def problem(self, target: Target) -> str | None:
        model = counted_model(target.model)
        if model is None:
            return (
                f"{target.label}: Bedrock counts tokens for Anthropic Claude models only, "
                "named by model id, inference profile id or their ARN"
            )
        if _EARLIER.match(model):
            return f"{target.label}: Bedrock counts no tokens for {model}"
        return None

    def build(self, request: CountInput, target: Target) -> UpstreamRequest:
        if request.canonical is None:
            raise ValueError("a Bedrock count needs the canonical translation")  # a wiring bug
        body = converse_body(strip(request.canonical))
        converse = {key: body[key] for key in COUNTED if key in body}
        model = counted_model(target.model) or target.model  # planned targets have one
        url = operation_url(base_url(target.provider), model, "count-tokens")
        payload = orjson.dumps({"input": {"converse": converse}})
        return UpstreamRequest("POST", url, request_headers(target, JSON_MEDIA), payload)

    def parse(self, body: bytes, target: Target) -> Counted:
        return Counted(reply_count(body, "inputTokens"))

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        return parse_http_error(status, headers, body)

    def refused(self, error: ProviderError) -> bool:
        """Newer Claude models count in some regions only (and some not on bedrock-runtime at
        all): Bedrock's refusal is not the request's fault."""
        return error.failure_class is FailureClass.CLIENT_ERROR and NO_COUNT in error.message


BEDROCK_COUNTER = BedrockCounter()
