"""Validation of inbound chat requests: the canonical shape every adapter relies on.

Each adapter (and the mock, and planning) reads the canonical request assuming OpenAI's types:
`role` is a string, `response_format` an object, `tool_choice.function` an object, a tool's
schema an object whose `properties` is an object. A client that sends anything else gets a 400
naming the field here, once, instead of a TypeError deep inside one adapter. Values (which
model ids exist, which params a target takes) stay the provider's to judge; types and the
bounds the gateway itself relies on (reservations, fan-out) are checked here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from core.api.validate_tools import check_response_format, check_tool_choice, check_tools
from core.wire.prompt_cache import MARK, check_mark
from core.wire.tokens import MAX_CHOICES, MAX_OUTPUT_TOKENS
from shared.errors import GatewayError, bad_request
from shared.names import check_model_name

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
# Deeper JSON than this is refused before anything walks it. orjson parses 1024 levels but
# serialises at most 254, so an adapter re-encoding a deeper payload (or wrapping a schema a few
# levels down) failed with a 500; translators also recurse. 128 is far beyond any real request
# (a 20-level nested JSON schema is about 45 levels) and leaves room for adapters' wrapping.
MAX_JSON_DEPTH = 128
# (key, lowest, highest) for the sampling numbers the adapters translate or clamp; OpenAI's ranges.
_NUMBERS = (
    ("temperature", 0.0, 2.0),
    ("top_p", 0.0, 1.0),
    ("presence_penalty", -2.0, 2.0),
    ("frequency_penalty", -2.0, 2.0),
)
_BOOLS = ("parallel_tool_calls", "logprobs", "store")
_STRINGS = ("user", "reasoning_effort", "service_tier")
_OBJECTS = ("logit_bias", "metadata", "prediction", "audio", "web_search_options")
# Top-level keys are parameter names: they are matched against what targets honour and, in
# lenient mode, listed in the x-interlock-dropped-params response header, which must stay a
# valid header (no CR/LF, nothing outside latin-1) of bounded size (the edge refuses header
# lines over 8 KB). Every real API parameter is a short identifier; OpenAI has about 40.
MAX_PARAMS = 64
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")


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
    # Counting brackets is C-speed; only a body that could be that deep is walked.
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and _too_deep(payload):
        raise bad_request(
            f"the request body nests JSON deeper than {MAX_JSON_DEPTH} levels",
            code="invalid_json",
        )
    return payload


def _too_deep(payload: Any) -> bool:
    """Level by level, iteratively: a recursive walk would itself hit Python's recursion limit,
    and this touches each container once (about 10 us for a 20-message request with tools)."""
    level = [payload]
    for _ in range(MAX_JSON_DEPTH):
        deeper = []
        for value in level:
            for child in value.values() if type(value) is dict else value:
                if type(child) is dict or type(child) is list:
                    deeper.append(child)
        if not deeper:
            return False
        level = deeper
    return True


def check_param_names(payload: dict[str, Any]) -> None:
    """Every top-level key a parameter name, and not too many of them (see _PARAM_NAME)."""
    if len(payload) > MAX_PARAMS:
        raise bad_request(
            f"the request has more than {MAX_PARAMS} top-level parameters",
            code="too_many_parameters",
        )
    for key in payload:
        if not _PARAM_NAME.fullmatch(key):
            shown = key[:64].encode("unicode_escape").decode("ascii")
            raise bad_request(
                f"'{shown}' is not a valid parameter name", param=shown, code="unknown_parameter"
            )


def require_model(payload: dict[str, Any]) -> str:
    """The model name under the rule both tiers share (shared.names)."""
    return check_model_name(payload)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def invalid(param: str, message: str, code: str = "invalid_value") -> GatewayError:
    return bad_request(f"{param} {message}", param=param, code=code)


def check_kinds(
    payload: dict[str, Any],
    bools: Iterable[str],
    strings: Iterable[str],
    error: Callable[[str, str, str], GatewayError] = invalid,
) -> None:
    """Each of `bools` a boolean and each of `strings` a string, when given: else a 400
    naming it (`error` words it in the API's own style)."""
    for key in bools:
        if payload.get(key) is not None and not isinstance(payload[key], bool):
            raise error(key, "must be a boolean", "invalid_type")
    for key in strings:
        if payload.get(key) is not None and not isinstance(payload[key], str):
            raise error(key, "must be a string", "invalid_type")


def check_count(payload: dict[str, Any], key: str, highest: int) -> None:
    """An optional integer in 1..highest (a bound the gateway reserves or fans out by)."""
    value = payload.get(key)
    if value is None:
        return
    if not is_int(value):
        raise invalid(key, "must be an integer", "invalid_type")
    if not 1 <= value <= highest:
        raise invalid(key, f"must be between 1 and {highest}")


def validate_chat(payload: dict[str, Any]) -> tuple[bool, bool]:
    """Checks the fields the gateway and its adapters use; returns (stream, include_usage)."""
    check_param_names(payload)
    require_model(payload)
    messages = payload.get("messages")
    if messages is None:
        raise invalid("messages", "is required", "missing_required_parameter")
    if not isinstance(messages, list):
        raise invalid("messages", "must be an array", "invalid_type")
    if not messages:
        raise invalid("messages", "must contain at least one message", "empty_array")
    for i, message in enumerate(messages):
        _check_message(message, i)
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid("stream", "must be a boolean", "invalid_type")
    include_usage = _stream_options(payload.get("stream_options"), bool(stream))
    check_count(payload, "max_tokens", MAX_OUTPUT_TOKENS)
    check_count(payload, "max_completion_tokens", MAX_OUTPUT_TOKENS)
    check_count(payload, "n", MAX_CHOICES)
    _check_scalars(payload)
    check_tools(payload.get("tools"))
    check_tool_choice(payload.get("tool_choice"))
    check_response_format(payload.get("response_format"))
    return bool(stream), include_usage


def _stream_options(options: Any, stream: bool) -> bool:
    if options is None:
        return False
    if not isinstance(options, dict):
        raise invalid("stream_options", "must be an object", "invalid_type")
    if not stream:
        raise invalid("stream_options", "is only allowed when stream is true")
    usage_flag = options.get("include_usage", False)
    if not isinstance(usage_flag, bool):
        raise invalid("stream_options.include_usage", "must be a boolean", "invalid_type")
    return usage_flag


def _check_scalars(payload: dict[str, Any]) -> None:
    for key, lowest, highest in _NUMBERS:
        value = payload.get(key)
        if value is None:
            continue
        if not is_number(value):
            raise invalid(key, "must be a number", "invalid_type")
        if not lowest <= value <= highest:
            raise invalid(key, f"must be between {lowest:g} and {highest:g}")
    check_kinds(payload, _BOOLS, _STRINGS)
    for key in _OBJECTS:
        if payload.get(key) is not None and not isinstance(payload[key], dict):
            raise invalid(key, "must be an object", "invalid_type")
    seed = payload.get("seed")
    if seed is not None and not is_int(seed):
        raise invalid("seed", "must be an integer", "invalid_type")
    top = payload.get("top_logprobs")
    if top is not None and not (is_int(top) and 0 <= top <= 20):
        raise invalid("top_logprobs", "must be an integer between 0 and 20")
    stop = payload.get("stop")
    if stop is not None and not (
        isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    ):
        raise invalid("stop", "must be a string or an array of strings", "invalid_type")


def _check_message(message: Any, i: int) -> None:
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        raise invalid(where, "must be an object", "invalid_type")
    role = message.get("role")
    if not isinstance(role, str) or role not in _ROLES:
        raise invalid(f"{where}.role", f"must be one of {', '.join(sorted(_ROLES))}")
    for key in ("name", "tool_call_id", "reasoning_content"):
        if message.get(key) is not None and not isinstance(message[key], str):
            raise invalid(f"{where}.{key}", "must be a string", "invalid_type")
    calls = message.get("tool_calls")
    if calls is not None:
        _check_tool_calls(calls, f"{where}.tool_calls")
    if message.get("function_call") is not None:
        _check_function(message["function_call"], f"{where}.function_call")
    if message.get("thinking_blocks") is not None and not isinstance(
        message["thinking_blocks"], list
    ):
        raise invalid(f"{where}.thinking_blocks", "must be an array", "invalid_type")
    if (
        MARK in message
    ):  # a prompt-cache breakpoint after the whole message (core.wire.prompt_cache)
        check_mark(message[MARK], where)
    content = message.get("content")
    if content is None:
        if role == "assistant" and (calls or message.get("function_call") or "content" in message):
            return
        raise invalid(f"{where}.content", "is required", "missing_required_parameter")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise invalid(
            f"{where}.content", "must be a string or an array of content parts", "invalid_type"
        )
    if not content:
        raise invalid(f"{where}.content", "must not be an empty array", "empty_array")
    for j, part in enumerate(content):
        _check_part(part, f"{where}.content[{j}]")


# Content part type -> (field, expected type, type name) the adapters read from it.
_PART_FIELDS: dict[str, tuple[str, type, str]] = {
    "text": ("text", str, "a string"),
    "refusal": ("refusal", str, "a string"),
    "image_url": ("image_url", dict, "an object"),
    "input_audio": ("input_audio", dict, "an object"),
    "file": ("file", dict, "an object"),
}


def _check_part(part: Any, where: str) -> None:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise invalid(where, "must be an object with a string type", "invalid_type")
    if MARK in part:
        check_mark(part[MARK], where)
    spec = _PART_FIELDS.get(part["type"])
    if spec is None:
        return  # a part type the gateway does not read: the target decides
    key, kind, name = spec
    if not isinstance(part.get(key), kind):
        raise invalid(f"{where}.{key}", f"must be {name}", "invalid_type")
    if key == "image_url" and not isinstance(part[key].get("url"), str):
        raise invalid(f"{where}.image_url.url", "must be a string", "invalid_type")
    if key == "input_audio":
        for field in ("data", "format"):
            if not isinstance(part[key].get(field), str):
                raise invalid(f"{where}.input_audio.{field}", "must be a string", "invalid_type")
    if key == "file":
        for field in ("file_data", "file_id", "filename"):
            if part[key].get(field) is not None and not isinstance(part[key][field], str):
                raise invalid(f"{where}.file.{field}", "must be a string", "invalid_type")


def _check_tool_calls(calls: Any, where: str) -> None:
    if not isinstance(calls, list):
        raise invalid(where, "must be an array", "invalid_type")
    for k, call in enumerate(calls):
        at = f"{where}[{k}]"
        if not isinstance(call, dict):
            raise invalid(at, "must be an object", "invalid_type")
        if not isinstance(call.get("id"), str):
            raise invalid(f"{at}.id", "must be a string", "invalid_type")
        if call.get("type") is not None and not isinstance(call["type"], str):
            raise invalid(f"{at}.type", "must be a string", "invalid_type")
        _check_function(call.get("function"), f"{at}.function")


def _check_function(function: Any, where: str) -> None:
    """A called function: {name: string, arguments: JSON text}."""
    if not isinstance(function, dict):
        raise invalid(where, "must be an object", "invalid_type")
    if not isinstance(function.get("name"), str):
        raise invalid(f"{where}.name", "must be a string", "invalid_type")
    arguments = function.get("arguments")
    if arguments is not None and not isinstance(arguments, str):
        raise invalid(f"{where}.arguments", "must be a string of JSON", "invalid_type")
