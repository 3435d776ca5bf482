"""Anthropic Message -> canonical chat completion, plus the mappings streams share.

Usage is the trap here: Anthropic's input_tokens exclude cache reads and writes, while OpenAI's
prompt_tokens include cached tokens (core.providers.adapters.cached_usage adds them back).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from core.providers.adapters.base import JSON, Target
from core.providers.adapters.cached_usage import cached_usage
from core.wire.tokens import token_count
from shared.errors import invalid_upstream, upstream_object, upstream_string

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: Any) -> str:
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def canonical_usage(usage: JSON) -> JSON:
    creation = usage.get("cache_creation")
    hour = (
        token_count(creation, "ephemeral_1h_input_tokens")
        if isinstance(creation, dict) and "ephemeral_1h_input_tokens" in creation
        else None
    )
    out = cached_usage(
        token_count(usage, "input_tokens"),
        token_count(usage, "cache_read_input_tokens"),
        token_count(usage, "cache_creation_input_tokens"),
        token_count(usage, "output_tokens"),
        hour,
    )
    details = usage.get("output_tokens_details")
    if isinstance(details, dict) and "thinking_tokens" in details:
        out["completion_tokens_details"] = {
            "reasoning_tokens": token_count(details, "thinking_tokens")
        }
    return out


def text_of(block: JSON, key: str) -> str:
    """A block's text field: "" when absent, else it must be a string (the wire format)."""
    return upstream_string(block, key, "a content block whose {} is not a string")


def tool_call(block: JSON) -> JSON:
    arguments = block.get("input")
    return {
        "id": text_of(block, "id"),
        "type": "function",
        "function": {
            "name": text_of(block, "name"),
            "arguments": orjson.dumps(arguments if arguments is not None else {}).decode(),
        },
    }


def parse_message(body: bytes, target: Target) -> JSON:
    payload = upstream_object(body, "a response that is not JSON", "a response without content")
    if not isinstance(payload.get("content"), list):
        raise invalid_upstream("a response without content")
    texts: list[str] = []
    reasoning: list[str] = []
    thinking_blocks: list[JSON] = []
    calls: list[JSON] = []
    for block in payload["content"]:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(text_of(block, "text"))
        elif kind == "tool_use":
            calls.append(tool_call(block))
        elif kind == "thinking":
            thinking = text_of(block, "thinking")
            reasoning.append(thinking)
            signature = text_of(block, "signature")
            thinking_blocks.append(
                {"type": "thinking", "thinking": thinking, "signature": signature}
            )
        elif kind == "redacted_thinking":
            thinking_blocks.append({"type": "redacted_thinking", "data": text_of(block, "data")})
        # Server-tool blocks (web search results and the like) have no chat-completions form.
    text = "".join(texts)
    message: JSON = {
        "role": "assistant",
        "content": text if text or not calls else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if thinking_blocks:
        message["thinking_blocks"] = thinking_blocks
    usage = payload.get("usage")
    result: JSON = {
        "id": payload.get("id") or "msg_unknown",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": payload.get("model") or target.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(payload.get("stop_reason")),
            }
        ],
    }
    if isinstance(usage, dict):
        result["usage"] = canonical_usage(usage)
    return result
