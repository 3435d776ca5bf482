"""The shape of an OpenAI-compatible answer, checked where it enters the gateway.

OpenAI-compatible hosts' chunks and completions become the canonical shape as they are (the
other adapters build theirs field by field), so this is where their wire format is enforced:
the encoders, the usage estimate of a cut stream and accounting then rely on the types below
without checking again. Anything else (`"choices": 5`, a delta that is a string, a token
count that is text) is an invalid upstream response, not a crash in some later stage. Fields
the gateway does not read pass through unchecked, so hosts' extensions keep working.
"""

from __future__ import annotations

from typing import Any

from core.providers.adapters.base import JSON
from core.wire.tokens import MAX_REPORTED_TOKENS
from shared.errors import invalid_upstream

_TEXT_FIELDS = ("content", "refusal", "reasoning_content", "role")
# DeepSeek's prompt-cache split is counted too: its hits become the canonical cache reads.
_USAGE_COUNTS = (
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "prompt_cache_hit_tokens",
    "prompt_cache_miss_tokens",
)


def _optional(value: Any, kind: type | tuple[type, ...], what: str) -> None:
    if value is not None and not isinstance(value, kind):
        raise invalid_upstream(what)


def _check_calls(calls: Any) -> None:
    _optional(calls, list, "tool_calls that are not a list")
    for call in calls or ():
        if not isinstance(call, dict):
            raise invalid_upstream("a tool call that is not an object")
        _optional(call.get("index"), int, "a tool call index that is not an integer")
        _optional(call.get("id"), str, "a tool call id that is not a string")
        function = call.get("function")
        _optional(function, dict, "a tool call function that is not an object")
        if function:
            _optional(function.get("name"), str, "a function name that is not a string")
            _optional(function.get("arguments"), str, "function arguments that are not a string")


def _check_parts(parts: list[Any]) -> None:
    for content in parts:
        if not isinstance(content, dict):
            raise invalid_upstream("a content part that is not an object")
        _optional(content.get("text"), str, "a content part whose text is not a string")


def _check_message(message: Any, part: str) -> None:
    """A delta (streams) or a message (completions); a message's content may be parts."""
    _optional(message, dict, f"a choice whose {part} is not an object")
    if not message:
        return
    for field in _TEXT_FIELDS:
        value = message.get(field)
        if field == "content" and part == "message" and isinstance(value, list):
            _check_parts(value)
            continue
        _optional(value, str, f"a {part} whose {field} is not a string")
    _check_calls(message.get("tool_calls"))


def check_choices(choices: Any, part: str) -> list[JSON]:
    """`choices` as a list of choice objects whose `part` ("delta" or "message") is readable."""
    if not isinstance(choices, list):
        raise invalid_upstream("choices that are not a list")
    for choice in choices:
        if not isinstance(choice, dict):
            raise invalid_upstream("a choice that is not an object")
        _optional(choice.get("index"), int, "a choice index that is not an integer")
        _optional(choice.get("finish_reason"), str, "a finish_reason that is not a string")
        _check_message(choice.get(part), part)
    return choices


def check_usage(usage: Any) -> None:
    """Token counts feed limits, key budgets and the usage log: non-negative integers only."""
    _optional(usage, dict, "usage that is not an object")
    for key in _USAGE_COUNTS if usage else ():
        count = usage.get(key)
        if count is not None and (type(count) is not int or not 0 <= count <= MAX_REPORTED_TOKENS):
            raise invalid_upstream("a usage count that is not a non-negative integer")


def check_answer(payload: JSON, part: str) -> None:
    """A chunk (`part` "delta", choices optional) or a completion ("message")."""
    _optional(payload.get("id"), str, "an id that is not a string")
    _optional(payload.get("model"), str, "a model that is not a string")
    choices = payload.get("choices")
    if choices is not None or part == "message":
        check_choices(choices, part)
    check_usage(payload.get("usage"))


def adopt_cache_hits(payload: JSON) -> None:
    """DeepSeek reports its prompt cache as `prompt_cache_hit_tokens` and
    `prompt_cache_miss_tokens` (their sum is `prompt_tokens`), not always as OpenAI's
    `prompt_tokens_details.cached_tokens`: the hits become the canonical cache reads (in place,
    on a checked answer), so pricing (core.spend.usage), the ledger and the Anthropic encoders
    read one field. OpenAI's own field wins when it counts any."""
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return
    hits = usage.get("prompt_cache_hit_tokens")
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    cached = details.get("cached_tokens")
    if type(hits) is not int or hits <= 0 or (type(cached) is int and cached > 0):
        return
    payload["usage"] = {**usage, "prompt_tokens_details": {**details, "cached_tokens": hits}}
