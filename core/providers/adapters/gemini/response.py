"""Gemini GenerateContentResponse -> canonical chat completion, plus what streams share.

Finish reasons: STOP is "tool_calls" when the candidate called a function (Gemini says STOP
either way); MAX_TOKENS is "length"; every safety/recitation/blocklist reason, and a prompt
blocked before any candidate, is "content_filter". A malformed or unexpected function call is
an error, not a finish: the client would otherwise get an empty "stop" answer. It is
TRANSIENT because a new sample usually succeeds, so dispatch may fail over before the first
byte. Parts without an OpenAI equivalent (code execution, generated images) are skipped.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import orjson

from core.providers.adapters.base import JSON
from core.providers.adapters.gemini.calls import tool_call_id
from core.wire.tokens import token_count
from shared.errors import FailureClass, ProviderError, invalid_upstream, upstream_object

FILTERED = "content_filter"
_FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": FILTERED,
    "RECITATION": FILTERED,
    "BLOCKLIST": FILTERED,
    "PROHIBITED_CONTENT": FILTERED,
    "SPII": FILTERED,
    "LANGUAGE": FILTERED,
    "IMAGE_SAFETY": FILTERED,
    "IMAGE_PROHIBITED_CONTENT": FILTERED,
    "IMAGE_RECITATION": FILTERED,
}
_CALL_ERRORS = frozenset({"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS"})


def finish_reason(raw: str, called: bool) -> str:
    """OpenAI's finish_reason for Gemini's; raises for reasons that are failures."""
    if raw in _CALL_ERRORS:
        raise ProviderError(
            502,
            f"the model produced an invalid function call ({raw})",
            FailureClass.TRANSIENT,
            code=raw.lower(),
        )
    if raw == "MISSING_THOUGHT_SIGNATURE":
        raise ProviderError(
            400,
            "a tool call in messages lacks the thought signature the model returned; "
            "send assistant tool_calls back with their original ids",
            FailureClass.CLIENT_ERROR,
            code="missing_thought_signature",
            param="messages",
        )
    reason = _FINISH.get(raw, "stop")
    return "tool_calls" if reason == "stop" and called else reason


def block_reason(payload: JSON) -> str | None:
    feedback = payload.get("promptFeedback")
    reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
    return reason if isinstance(reason, str) else None


def usage(meta: Any) -> JSON:
    """Gemini's promptTokenCount already includes cached tokens, as OpenAI's prompt_tokens do."""
    meta = meta if isinstance(meta, dict) else {}
    prompt = token_count(meta, "promptTokenCount") + token_count(meta, "toolUsePromptTokenCount")
    thoughts = token_count(meta, "thoughtsTokenCount")
    completion = token_count(meta, "candidatesTokenCount") + thoughts
    total = token_count(meta, "totalTokenCount") or prompt + completion
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total,
        "prompt_tokens_details": {"cached_tokens": token_count(meta, "cachedContentTokenCount")},
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    }


def response_seed(payload: JSON) -> str:
    """Seeds tool-call ids: the response id when Gemini sends one, else a random token."""
    response_id = payload.get("responseId")
    return response_id if isinstance(response_id, str) and response_id else secrets.token_hex(8)


def completion_id(seed: str) -> str:
    return f"chatcmpl-{seed}"


def arguments_text(call: JSON) -> str:
    args = call.get("args")
    return orjson.dumps(args if isinstance(args, dict) else {}).decode()


def candidates_of(payload: JSON) -> list[JSON]:
    """The candidate objects; `candidates` absent means none (a blocked prompt)."""
    candidates = payload.get("candidates")
    if candidates is None:
        return []
    if not isinstance(candidates, list):
        raise invalid_upstream("candidates that are not a list")
    return [c for c in candidates if isinstance(c, dict)]


def candidate_parts(candidate: JSON) -> list[JSON]:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def parse_response(body: bytes, model: str) -> JSON:
    payload = upstream_object(body, "a response that is not JSON")
    candidates = candidates_of(payload)
    seed = response_seed(payload)
    choices = []
    if not candidates:
        if block_reason(payload) is None:
            raise invalid_upstream("a response without candidates")
        choices.append(_choice(0, {"role": "assistant", "content": None}, FILTERED))
    for position, candidate in enumerate(candidates):
        index = candidate.get("index", position)
        message, called = _message(candidate, seed, index)
        raw = candidate.get("finishReason")
        reason = finish_reason(raw, called) if isinstance(raw, str) else "stop"
        choices.append(_choice(index, message, reason))
    model_version = payload.get("modelVersion")
    return {
        "id": completion_id(seed),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_version if isinstance(model_version, str) else model,
        "choices": choices,
        "usage": usage(payload.get("usageMetadata")),
    }


def _choice(index: int, message: JSON, reason: str) -> JSON:
    return {"index": index, "message": message, "logprobs": None, "finish_reason": reason}


def _message(candidate: JSON, seed: str, index: int) -> tuple[JSON, bool]:
    text: list[str] = []
    thoughts: list[str] = []
    calls: list[JSON] = []
    for part in candidate_parts(candidate):
        call = part.get("functionCall")
        if isinstance(call, dict):
            call_id = tool_call_id(seed, index, len(calls), part.get("thoughtSignature"))
            function = {"name": str(call.get("name", "")), "arguments": arguments_text(call)}
            calls.append({"id": call_id, "type": "function", "function": function})
        elif isinstance(part.get("text"), str):
            (thoughts if part.get("thought") is True else text).append(part["text"])
    message: JSON = {"role": "assistant", "content": "".join(text) or None}
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    if calls:
        message["tool_calls"] = calls
    return message, bool(calls)
