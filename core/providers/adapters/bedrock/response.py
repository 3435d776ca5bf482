"""Converse response -> canonical chat completion, plus the mappings streams share.

Bedrock's inputTokens exclude cache reads and writes, while OpenAI's prompt_tokens include
them (core.providers.adapters.cached_usage adds them back).
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson

from core.providers.adapters.base import JSON
from core.providers.adapters.bedrock.request import RESPONSE_TOOL
from core.providers.adapters.cached_usage import cached_usage
from core.wire.tokens import token_count
from shared.errors import invalid_upstream, upstream_string

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}


def completion_id() -> str:
    # Converse bodies carry no id; the request id is only in a header the parser never sees.
    return "chatcmpl-" + os.urandom(12).hex()


def finish_reason(stop_reason: Any, real_tool_calls: bool) -> str:
    reason = FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    if reason == "tool_calls" and not real_tool_calls:
        return "stop"  # only the response_format tool was called: that is the answer
    return reason


def convert_usage(usage: Any) -> JSON:
    usage = usage if isinstance(usage, dict) else {}
    # 1h cache writes cost more than 5m ones: Converse's cacheDetails ({ttl, inputTokens} per
    # TTL, TokenUsage in the API reference) gives their part of the writes, for pricing.
    details = usage.get("cacheDetails")
    hour = (
        [d for d in details if isinstance(d, dict) and d.get("ttl") == "1h"]
        if isinstance(details, list)
        else []
    )
    return cached_usage(
        token_count(usage, "inputTokens"),
        token_count(usage, "cacheReadInputTokens"),
        token_count(usage, "cacheWriteInputTokens"),
        token_count(usage, "outputTokens"),
        sum(token_count(d, "inputTokens") for d in hour) if hour else None,
    )


def string(mapping: JSON, key: str) -> str:
    """A field the wire format says is a string: "" when absent, invalid when another type."""
    return upstream_string(mapping, key)


def json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def parse_converse(body: bytes, model: str) -> JSON:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise invalid_upstream("a response that is not JSON") from None
    output = payload.get("output") if isinstance(payload, dict) else None
    message = output.get("message") if isinstance(output, dict) else None
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        raise invalid_upstream("a response without output.message.content")
    texts, reasoning, tool_calls = _content_parts(message["content"])
    canonical_message: JSON = {
        "role": "assistant",
        "content": "".join(texts) if texts or not tool_calls else None,
        "refusal": None,
    }
    if tool_calls:
        canonical_message["tool_calls"] = tool_calls
    if reasoning:
        canonical_message["reasoning_content"] = "".join(reasoning)
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": canonical_message,
                "logprobs": None,
                "finish_reason": finish_reason(payload.get("stopReason"), bool(tool_calls)),
            }
        ],
        "usage": convert_usage(payload.get("usage")),
    }


def _content_parts(blocks: list[Any]) -> tuple[list[str], list[str], list[JSON]]:
    """The texts, reasoning texts and tool calls of Converse content blocks (the forced
    response-format tool's input is text: it carries the JSON answer)."""
    texts: list[str] = []
    reasoning: list[str] = []
    tool_calls: list[JSON] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            if use.get("name") == RESPONSE_TOOL:
                texts.append(json_text(use.get("input")))
                continue
            tool_calls.append(
                {
                    "id": string(use, "toolUseId"),
                    "type": "function",
                    "function": {
                        "name": string(use, "name"),
                        "arguments": json_text(use.get("input")),
                    },
                }
            )
        elif isinstance(block.get("reasoningContent"), dict):
            reasoning_text = block["reasoningContent"].get("reasoningText")
            text = reasoning_text.get("text") if isinstance(reasoning_text, dict) else None
            if isinstance(text, str):
                reasoning.append(text)
    return texts, reasoning, tool_calls
