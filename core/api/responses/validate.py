"""The top level of a Responses request: names, types, and which fields need OpenAI itself.

Items, tools and formats are checked where they are translated (request.py), so each 400
names the exact Responses field. Fields no other provider has (`background`, `conversation`,
`prompt`, `max_tool_calls`, `top_logprobs`) are accepted here and served by passthrough only:
for the translated targets they are a 400 naming the field (`openai_only`), which planning
raises when no OpenAI target can serve. `include` only asks for more fields in the answer:
a translated answer has no encrypted reasoning (nor built-in tool results) to add, so it is
honoured as nothing rather than refused (agents such as Codex send
`["reasoning.encrypted_content"]` on every request, whatever the model).
"""

from __future__ import annotations

from typing import Any

from core.api.responses.request import GATEWAY_FIELDS, invalid, openai_only
from core.api.validate import check_kinds, check_param_names, require_model
from shared.errors import GatewayError

TRANSLATED_FIELDS = frozenset(
    {
        "tools",
        "tool_choice",
        "text",
        "reasoning",
        "max_output_tokens",
        "temperature",
        "top_p",
        "metadata",
        "user",
        "parallel_tool_calls",
    }
)
OPENAI_FIELDS = frozenset(
    {"background", "conversation", "prompt", "max_tool_calls", "top_logprobs"}
)
_BOOLS = ("stream", "store", "parallel_tool_calls", "background")
_STRINGS = ("user", "instructions", "previous_response_id", "prompt_cache_key", "safety_identifier")


def validate_request(payload: dict[str, Any]) -> tuple[bool, GatewayError | None]:
    """(stream, why only OpenAI can serve it or None)."""
    check_param_names(payload)
    require_model(payload)
    for key in payload:
        if key not in GATEWAY_FIELDS and key not in TRANSLATED_FIELDS and key not in OPENAI_FIELDS:
            raise invalid(key, "is not a parameter of the Responses API", "unknown_parameter")
    check_kinds(payload, _BOOLS, _STRINGS, invalid)
    metadata = payload.get("metadata")
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):
        raise invalid("metadata", "must be an object of strings", "invalid_type")
    include = payload.get("include")
    if include is not None and not (
        isinstance(include, list) and all(isinstance(v, str) for v in include)
    ):
        raise invalid("include", "must be an array of strings", "invalid_type")
    if payload.get("stream_options") is not None and not payload.get("stream"):
        raise invalid("stream_options", "is only allowed when stream is true")
    return bool(payload.get("stream")), _openai_only(payload)


def _openai_only(payload: dict[str, Any]) -> GatewayError | None:
    for key in sorted(OPENAI_FIELDS):
        value = payload.get(key)
        if value is not None and value is not False:
            return openai_only(key, f"'{key}'")
    return None
