"""Canonical chat completion -> Anthropic Message, and the mappings the stream encoder shares.

Usage is the trap: OpenAI's prompt_tokens include cached tokens, Anthropic's input_tokens exclude
both cache reads and cache writes, so those are subtracted and reported in their own fields.
"""

from __future__ import annotations

from typing import Any

import orjson

from core.providers.adapters.base import JSON
from core.wire.tokens import token_count

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def anthropic_usage(usage: Any) -> JSON:
    details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
    cached = token_count(details, "cached_tokens")
    created = token_count(details, "cache_creation_tokens") or token_count(
        details, "cache_write_tokens"
    )
    return {
        "input_tokens": max(0, token_count(usage, "prompt_tokens") - cached - created),
        "cache_creation_input_tokens": created,
        "cache_read_input_tokens": cached,
        "output_tokens": token_count(usage, "completion_tokens"),
    }


def message_id(canonical_id: Any, fallback: str) -> str:
    """Anthropic ids start with msg_; keep the upstream's id recognisable inside it."""
    if not isinstance(canonical_id, str) or not canonical_id:
        return fallback
    if canonical_id.startswith("msg_"):
        return canonical_id
    return "msg_" + canonical_id.removeprefix("chatcmpl-")


def stop_reason(
    finish: Any, choice: Any, stop_sequences: tuple[str, ...]
) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence). Which stop sequence matched is known only from hosts that
    report it (vLLM's `stop_reason`); otherwise a stop is an end_turn."""
    if finish == "stop" and stop_sequences and isinstance(choice, dict):
        matched = choice.get("stop_reason")
        if isinstance(matched, str) and matched in stop_sequences:
            return "stop_sequence", matched
    if isinstance(finish, str):
        return STOP_REASONS.get(finish, "end_turn"), None
    return "end_turn", None


def tool_input(arguments: Any) -> JSON:
    """Anthropic needs an object; text that is not one is kept rather than silently lost."""
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {"_raw_arguments": arguments}
    return parsed if isinstance(parsed, dict) else {"_raw_arguments": arguments}


def reasoning_text(message: Any) -> str | None:
    """reasoning_content (DeepSeek, interlock) or reasoning (OpenRouter, vLLM)."""
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def to_message(
    completion: JSON, fallback_id: str, fallback_model: str, stop_sequences: tuple[str, ...]
) -> JSON:
    choices = completion.get("choices") or []
    choice = choices[0] if choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    content: list[JSON] = []
    thinking = reasoning_text(message)
    if thinking:
        content.append({"type": "thinking", "thinking": thinking, "signature": ""})
    text = message.get("content")
    if isinstance(text, list):  # some hosts answer with content parts
        text = "".join(
            p["text"] for p in text if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        content.append({"type": "text", "text": refusal})
    for k, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{k}_{fallback_id}",
                "name": function.get("name") or "",
                "input": tool_input(function.get("arguments")),
            }
        )
    reason, sequence = stop_reason(choice.get("finish_reason"), choice, stop_sequences)
    if reason == "end_turn" and message.get("tool_calls"):
        reason = "tool_use"  # hosts that answer tool calls with finish_reason "stop"
    elif reason == "end_turn" and isinstance(refusal, str) and refusal:
        reason = "refusal"
    return {
        "id": message_id(completion.get("id"), fallback_id),
        "type": "message",
        "role": "assistant",
        "model": completion.get("model") or fallback_model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": anthropic_usage(completion.get("usage")),
    }
