"""Span attributes by the OpenTelemetry GenAI semantic conventions, pinned to ONE version:
semantic-conventions v1.41.0 (schema https://opentelemetry.io/schemas/1.41.0; the last release
that carried the GenAI conventions before they moved to open-telemetry/semantic-conventions-genai;
the names below are unchanged there). The gateway's own decisions are under `interlock.*`.

Nothing here reads prompt or completion text, except `input_messages` / `output_messages`,
which the tracer calls only when the operator set `tracing.capture_content`.
"""

from __future__ import annotations

from typing import Any

import orjson

from core.spend.usage import UsageSplit

SCHEMA_URL = "https://opentelemetry.io/schemas/1.41.0"

OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"

# A provider kind -> gen_ai.provider.name (the convention's well-known values; a kind it does
# not list keeps its own name, as the convention allows).
PROVIDERS = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "bedrock": "aws.bedrock",
    "gemini": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
}


def usage_attributes(usage: dict[str, Any] | None) -> dict[str, int]:
    """gen_ai.usage.* from the canonical usage (input counts cached tokens too), plus the
    cache split under interlock.usage.*; Anthropic's own field names are read as well."""
    if not usage:
        return {}
    if "input_tokens" in usage and "prompt_tokens" not in usage:  # a relayed Anthropic usage
        inputs = sum(
            v
            for k, v in usage.items()
            if k in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
            and type(v) is int
        )
        output = usage.get("output_tokens")
        return {INPUT_TOKENS: inputs, OUTPUT_TOKENS: output if type(output) is int else 0}
    split = UsageSplit.from_usage(usage)
    return {
        INPUT_TOKENS: split.input_total,
        OUTPUT_TOKENS: split.output,
        "interlock.usage.cache_read_tokens": split.cache_read,
        "interlock.usage.cache_write_tokens": split.cache_write_5m + split.cache_write_1h,
    }


def response_attributes(result: Any) -> dict[str, Any]:
    """Response model, id and finish reasons from an answer (a chat completion, an Anthropic
    message) or a stream's first chunk; what a result does not say is left out."""
    if isinstance(result, tuple) and result:  # a stream: (first chunk, the rest)
        result = result[0]
    if not isinstance(result, dict):
        return {}
    attributes: dict[str, Any] = {}
    model, ident = result.get("model"), result.get("id")
    if isinstance(model, str):
        attributes[RESPONSE_MODEL] = model
    if isinstance(ident, str):
        attributes[RESPONSE_ID] = ident
    reasons = [
        c["finish_reason"]
        for c in result.get("choices") or ()
        if isinstance(c, dict) and isinstance(c.get("finish_reason"), str)
    ]
    if isinstance(result.get("stop_reason"), str):
        reasons.append(result["stop_reason"])
    if reasons:
        attributes[FINISH_REASONS] = reasons
    return attributes


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    for item in content if isinstance(content, list) else ():
        if isinstance(item, dict) and item.get("type") == "text":
            parts.append({"type": "text", "content": item.get("text")})
        elif isinstance(item, dict):
            parts.append({"type": str(item.get("type"))})  # images, tools: the kind only
    return parts


def input_messages(payload: Any) -> str | None:
    """gen_ai.input.messages (opt-in): the request's messages as the convention's
    role-and-parts JSON; text only (an image or a tool block is named, not copied)."""
    messages = payload.get("messages") if isinstance(payload, dict) else None
    if not isinstance(messages, list):
        return None
    shaped = [
        {"role": str(m.get("role")), "parts": _parts(m.get("content"))}
        for m in messages
        if isinstance(m, dict)
    ]
    return orjson.dumps(shaped).decode()


def output_messages(result: Any) -> str | None:
    """gen_ai.output.messages (opt-in) of a complete answer; None for a stream (its text is
    never held by the gateway)."""
    if not isinstance(result, dict):
        return None
    if isinstance(result.get("choices"), list):
        shaped = [
            {
                "role": "assistant",
                "parts": _parts((c.get("message") or {}).get("content")),
                "finish_reason": c.get("finish_reason"),
            }
            for c in result["choices"]
            if isinstance(c, dict)
        ]
    elif isinstance(result.get("content"), list):  # an Anthropic message
        shaped = [
            {
                "role": "assistant",
                "parts": _parts(result["content"]),
                "finish_reason": result.get("stop_reason"),
            }
        ]
    else:
        return None
    return orjson.dumps(shaped).decode()
