"""Validation of inbound Messages requests: what the gateway itself relies on, field by field.

Block-level details are checked by translation (only when a non-Anthropic target needs them) or
by Anthropic itself for passthrough, which knows its own rules better than we do. Messages name
the field the way Anthropic's own errors do (`max_tokens: ...`).
"""

from __future__ import annotations

from typing import Any

from core.validate import require_model
from shared.errors import GatewayError, bad_request

_ROLES = ("user", "assistant")


def _invalid(param: str, message: str, code: str = "invalid_value") -> GatewayError:
    return bad_request(f"{param}: {message}", param=param, code=code)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def validate_request(payload: dict[str, Any]) -> bool:
    """Checks the fields the gateway uses; returns whether the client asked for a stream."""
    require_model(payload)
    if "max_tokens" not in payload:
        raise _invalid("max_tokens", "field required", "missing_required_parameter")
    if not _positive_int(payload["max_tokens"]):
        raise _invalid("max_tokens", "must be an integer greater than 0")
    messages = payload.get("messages")
    if messages is None:
        raise _invalid("messages", "field required", "missing_required_parameter")
    if not isinstance(messages, list):
        raise _invalid("messages", "must be an array", "invalid_type")
    if not messages:
        raise _invalid("messages", "must contain at least one message", "empty_array")
    for i, message in enumerate(messages):
        _check_message(message, i)
    _check_system(payload.get("system"))
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _invalid("stream", "must be a boolean", "invalid_type")
    _check_list_of_objects(payload, "tools")
    choice = payload.get("tool_choice")
    if choice is not None and not (
        isinstance(choice, dict) and isinstance(choice.get("type"), str)
    ):
        raise _invalid("tool_choice", "must be an object with a type", "invalid_type")
    return bool(stream)


def _check_message(message: Any, i: int) -> None:
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        raise _invalid(where, "must be an object", "invalid_type")
    if message.get("role") not in _ROLES:
        raise _invalid(f"{where}.role", "must be 'user' or 'assistant'")
    if "content" not in message:
        raise _invalid(f"{where}.content", "field required", "missing_required_parameter")
    content = message["content"]
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _invalid(
            f"{where}.content", "must be a string or an array of content blocks", "invalid_type"
        )
    for j, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _invalid(f"{where}.content[{j}]", "must be an object with a type", "invalid_type")


def _check_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise _invalid("system", "must be a string or an array of text blocks", "invalid_type")
    for j, block in enumerate(system):
        if not (
            isinstance(block, dict)
            and block.get("type") == "text"
            and isinstance(block.get("text"), str)
        ):
            raise _invalid(f"system[{j}]", "must be a text block with a string text")


def _check_list_of_objects(payload: dict[str, Any], key: str) -> None:
    value = payload.get(key)
    if value is None:
        return
    if not isinstance(value, list):
        raise _invalid(key, "must be an array", "invalid_type")
    for j, item in enumerate(value):
        if not isinstance(item, dict):
            raise _invalid(f"{key}[{j}]", "must be an object", "invalid_type")
