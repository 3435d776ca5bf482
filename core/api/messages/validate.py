"""Validation of inbound Messages requests: what the gateway itself relies on, field by field.

Block-level details are checked by translation (only when a non-Anthropic target needs them) or
by Anthropic itself for passthrough, which knows its own rules better than we do. Messages name
the field the way Anthropic's own errors do (`max_tokens: ...`).
"""

from __future__ import annotations

from typing import Any

from core.api.validate import check_param_names, is_int, is_number, require_model
from core.api.validate_tools import check_schema
from core.wire.tokens import MAX_OUTPUT_TOKENS
from shared.errors import GatewayError, bad_request

_ROLES = ("user", "assistant")


def _invalid(param: str, message: str, code: str = "invalid_value") -> GatewayError:
    return bad_request(f"{param}: {message}", param=param, code=code)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def validate_request(payload: dict[str, Any]) -> bool:
    """Checks the fields the gateway and translation use; returns whether to stream."""
    check_param_names(payload)
    require_model(payload)
    if "max_tokens" not in payload:
        raise _invalid("max_tokens", "field required", "missing_required_parameter")
    if not _positive_int(payload["max_tokens"]):
        raise _invalid("max_tokens", "must be an integer greater than 0")
    if payload["max_tokens"] > MAX_OUTPUT_TOKENS:
        raise _invalid("max_tokens", f"must be at most {MAX_OUTPUT_TOKENS}")
    check_input(payload)
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _invalid("stream", "must be a boolean", "invalid_type")
    _check_sampling(payload)
    return bool(stream)


def validate_count(payload: dict[str, Any]) -> None:
    """A count_tokens request: the input a Messages request would send (no max_tokens, no
    sampling: nothing is generated)."""
    check_param_names(payload)
    require_model(payload)
    check_input(payload)
    if payload.get("thinking") is not None and not isinstance(payload["thinking"], dict):
        raise _invalid("thinking", "must be an object", "invalid_type")


def check_input(payload: dict[str, Any]) -> None:
    """What both a Message and a count read as input: messages, system, tools, tool_choice."""
    messages = payload.get("messages")
    if messages is None:
        raise _invalid("messages", "field required", "missing_required_parameter")
    if not isinstance(messages, list):
        raise _invalid("messages", "must be an array", "invalid_type")
    if not messages:
        raise _invalid("messages", "must contain at least one message", "empty_array")
    last = len(messages) - 1
    for i, message in enumerate(messages):
        _check_message(message, i, i == last)
    _check_system(payload.get("system"))
    _check_tools(payload.get("tools"))
    _check_tool_choice(payload.get("tool_choice"))


def _check_sampling(payload: dict[str, Any]) -> None:
    for key in ("temperature", "top_p"):
        value = payload.get(key)
        if value is not None and not (is_number(value) and 0 <= value <= 1):
            raise _invalid(key, "must be a number between 0 and 1")
    top_k = payload.get("top_k")
    if top_k is not None and not (is_int(top_k) and top_k >= 0):
        raise _invalid("top_k", "must be a non-negative integer")
    stop = payload.get("stop_sequences")
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise _invalid("stop_sequences", "must be an array of strings", "invalid_type")
    for key in ("metadata", "thinking"):
        if payload.get(key) is not None and not isinstance(payload[key], dict):
            raise _invalid(key, "must be an object", "invalid_type")


def _check_message(message: Any, i: int, last: bool) -> None:
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        raise _invalid(where, "must be an object", "invalid_type")
    role = message.get("role")
    if not isinstance(role, str) or role not in _ROLES:
        raise _invalid(f"{where}.role", "must be 'user' or 'assistant'")
    if "content" not in message:
        raise _invalid(f"{where}.content", "field required", "missing_required_parameter")
    content = message["content"]
    if not isinstance(content, str | list):
        raise _invalid(
            f"{where}.content", "must be a string or an array of content blocks", "invalid_type"
        )
    if not content and not (last and role == "assistant"):
        # Anthropic's own rule; an empty turn would also translate to no message at all.
        raise _invalid(
            f"{where}.content",
            "must be non-empty (only a final assistant message may be empty)",
            "empty_array" if isinstance(content, list) else "invalid_value",
        )
    if isinstance(content, list):
        for j, block in enumerate(content):
            _check_block(block, f"{where}.content[{j}]")


# Block type -> (field, expected type, type name) that translation reads from it.
_BLOCK_FIELDS: dict[str, tuple[tuple[str, type, str], ...]] = {
    "text": (("text", str, "a string"),),
    "image": (("source", dict, "an object"),),
    "document": (("source", dict, "an object"),),
    "tool_use": (("id", str, "a string"), ("name", str, "a string"), ("input", dict, "an object")),
    "tool_result": (("tool_use_id", str, "a string"),),
}


def _check_block(block: Any, where: str) -> None:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise _invalid(where, "must be an object with a type", "invalid_type")
    for key, kind, name in _BLOCK_FIELDS.get(block["type"], ()):
        if not isinstance(block.get(key), kind):
            raise _invalid(f"{where}.{key}", f"must be {name}", "invalid_type")
    if block["type"] == "tool_result":
        content = block.get("content")
        if content is not None and not isinstance(content, str | list):
            raise _invalid(f"{where}.content", "must be a string or an array", "invalid_type")
        if isinstance(content, list):
            for k, inner in enumerate(content):
                _check_block(inner, f"{where}.content[{k}]")


def _check_tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _invalid("tools", "must be an array", "invalid_type")
    for j, tool in enumerate(tools):
        where = f"tools[{j}]"
        if not isinstance(tool, dict):
            raise _invalid(where, "must be an object", "invalid_type")
        kind = tool.get("type")
        if kind is not None and not isinstance(kind, str):
            raise _invalid(f"{where}.type", "must be a string", "invalid_type")
        if kind not in (None, "custom"):
            continue  # a server tool: its shape is Anthropic's to judge
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise _invalid(f"{where}.name", "must be a non-empty string", "invalid_type")
        if tool.get("description") is not None and not isinstance(tool["description"], str):
            raise _invalid(f"{where}.description", "must be a string", "invalid_type")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise _invalid(f"{where}.input_schema", "must be a JSON schema object", "invalid_type")
        check_schema(schema, f"{where}.input_schema")


def _check_tool_choice(choice: Any) -> None:
    if choice is None:
        return
    if not isinstance(choice, dict) or not isinstance(choice.get("type"), str):
        raise _invalid("tool_choice", "must be an object with a type", "invalid_type")
    if choice["type"] not in ("auto", "any", "tool", "none"):
        raise _invalid("tool_choice.type", "must be auto, any, tool or none")
    if choice["type"] == "tool" and not isinstance(choice.get("name"), str):
        raise _invalid("tool_choice.name", "must be a string", "invalid_type")


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
