"""Validation of inbound chat requests: only what the gateway relies on, with precise fields.

Everything else is passed to the provider, which knows its own rules better than we do.
"""

from __future__ import annotations

from typing import Any

import orjson

from shared.errors import GatewayError, bad_request

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def parse_json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise bad_request("the request body is empty; expected a JSON object")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(
            f"the request body is not valid JSON ({exc.msg})", code="invalid_json"
        ) from None
    if not isinstance(payload, dict):
        raise bad_request("the request body must be a JSON object")
    return payload


def require_model(payload: dict[str, Any]) -> str:
    model = payload.get("model")
    if model is None:
        raise bad_request(
            "you must provide a model parameter", param="model", code="missing_required_parameter"
        )
    if not isinstance(model, str) or not model.strip():
        raise bad_request("model must be a non-empty string", param="model", code="invalid_type")
    return model


def validate_chat(payload: dict[str, Any]) -> tuple[bool, bool]:
    """Checks the fields the gateway uses; returns (stream, include_usage)."""
    require_model(payload)
    messages = payload.get("messages")
    if messages is None:
        raise bad_request(
            "you must provide a messages parameter",
            param="messages",
            code="missing_required_parameter",
        )
    if not isinstance(messages, list):
        raise bad_request("messages must be an array", param="messages", code="invalid_type")
    if not messages:
        raise bad_request(
            "messages must contain at least one message", param="messages", code="empty_array"
        )
    for i, message in enumerate(messages):
        _check_message(message, i)
    stream = payload.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise bad_request("stream must be a boolean", param="stream", code="invalid_type")
    include_usage = False
    options = payload.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise bad_request(
                "stream_options must be an object", param="stream_options", code="invalid_type"
            )
        if not stream:
            raise bad_request(
                "stream_options is only allowed when stream is true",
                param="stream_options",
                code="invalid_value",
            )
        usage_flag = options.get("include_usage", False)
        if not isinstance(usage_flag, bool):
            raise bad_request(
                "stream_options.include_usage must be a boolean",
                param="stream_options.include_usage",
                code="invalid_type",
            )
        include_usage = usage_flag
    for key in ("max_tokens", "max_completion_tokens", "n"):
        value = payload.get(key)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1
        ):
            raise bad_request(f"{key} must be a positive integer", param=key, code="invalid_value")
    return stream, include_usage


def _check_message(message: Any, i: int) -> None:
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        raise bad_request(f"{where} must be an object", param=where, code="invalid_type")
    role = message.get("role")
    if role not in _ROLES:
        raise bad_request(
            f"{where}.role must be one of {', '.join(sorted(_ROLES))}",
            param=f"{where}.role",
            code="invalid_value",
        )
    content = message.get("content")
    if content is None:
        if role == "assistant" and (message.get("tool_calls") or message.get("function_call")):
            return
        if role == "assistant" and "content" in message:
            return
        raise bad_request(
            f"{where}.content is required",
            param=f"{where}.content",
            code="missing_required_parameter",
        )
    if not isinstance(content, str | list):
        raise bad_request(
            f"{where}.content must be a string or an array of content parts",
            param=f"{where}.content",
            code="invalid_type",
        )
    if isinstance(content, list):
        for j, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise bad_request(
                    f"{where}.content[{j}] must be an object with a type",
                    param=f"{where}.content[{j}]",
                    code="invalid_type",
                )


def payload_too_large(limit: int) -> GatewayError:
    return GatewayError(
        413, f"request body exceeds the {limit} byte limit", code="request_too_large"
    )
