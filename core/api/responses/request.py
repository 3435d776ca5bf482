"""Responses request -> canonical (OpenAI chat) request, checked as it is read.

Pure. Every field is checked where it is translated, so a 400 names the Responses field
(`input[2].content[0].image_url`, `tools[1].type`, `text.format.schema`), never a chat one.
What the canonical form cannot carry is refused rather than guessed at: built-in tools
(web_search, file_search, ...) and inputs that only OpenAI itself can resolve (file ids,
item references) are 400s naming the field; the OpenAI passthrough (plan.py) serves them
instead when the route has an OpenAI target. Reasoning items in the input are left out: other
providers cannot take them back (OpenAI's encrypted reasoning travels by passthrough only).

Mapping: `instructions` -> a leading system message; input messages keep their role
(`developer` included: the adapters map it); consecutive `function_call` items join one
assistant turn's `tool_calls`; `function_call_output` -> a `tool` message; `text.format` ->
`response_format`; `reasoning.effort` -> `reasoning_effort` (a hint: dropped for targets
that cannot take it, as the Messages API does with `thinking`); `max_output_tokens` ->
`max_tokens`; `metadata` and `user` as chat has them (billing tags, core.api.tags).
"""

from __future__ import annotations

import re
from typing import Any

from core.api.validate import is_int, is_number
from core.providers.adapters.base import JSON
from core.wire.tokens import MAX_OUTPUT_TOKENS
from shared.errors import GatewayError, bad_request

# Fields the gateway reads itself, or that have no effect on the answer for any target.
GATEWAY_FIELDS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "stream",
        "store",
        "previous_response_id",
        "include",
        "truncation",
        "service_tier",
        "prompt_cache_key",
        "safety_identifier",
        "stream_options",
    }
)
# Canonical fields with the same meaning under the same name.
_SAME = ("temperature", "top_p", "metadata", "user", "parallel_tool_calls", "prompt_cache_key")
# Canonical field (prefix) -> the Responses field a 400 should name, first match wins.
_FIELDS = (
    (re.compile(r"^response_format(\.json_schema)?"), "text.format"),
    (re.compile(r"^tools\[(\d+)\]\.function"), r"tools[\1]"),
    (re.compile(r"^tool_choice\.function"), "tool_choice"),
    (re.compile(r"^messages.*"), "input"),
    (re.compile(r"^max_tokens"), "max_output_tokens"),
    (re.compile(r"^reasoning_effort"), "reasoning.effort"),
)
_ROLES = frozenset({"user", "assistant", "system", "developer"})
_EFFORTS = frozenset({"minimal", "low", "medium", "high", "none", "xhigh"})
# Item types only OpenAI itself can take as input (the translated targets have no equivalent).
OPENAI_ONLY_ITEMS = frozenset(
    {
        "item_reference",
        "web_search_call",
        "file_search_call",
        "computer_call",
        "computer_call_output",
        "code_interpreter_call",
        "image_generation_call",
        "local_shell_call",
        "local_shell_call_output",
        "mcp_call",
        "mcp_list_tools",
        "mcp_approval_request",
        "mcp_approval_response",
        "custom_tool_call",
        "custom_tool_call_output",
    }
)


def renamed(error: GatewayError) -> GatewayError:
    """A chat validation or planning refusal in the Responses API's words: the field it names
    is the client's (`text.format.schema`, `tools[0].parameters`, `input`), not chat's."""
    param = error.param
    if not param:
        return error
    for pattern, field in _FIELDS:
        shown, count = pattern.subn(field, param, count=1)
        if count:
            error.message = error.message.replace(param, shown)
            error.param = shown
            break
    return error


def invalid(param: str, message: str, code: str = "invalid_value") -> GatewayError:
    return bad_request(f"{param}: {message}", param=param, code=code)


def openai_only(param: str, what: str) -> GatewayError:
    return GatewayError(
        400,
        f"{param}: {what} can only be served by an OpenAI target",
        param=param,
        code="unsupported_parameter",
    )


def to_canonical(payload: JSON, history: list[Any] | None = None) -> JSON:
    """The canonical chat payload for `payload` (a Responses request whose model and types the
    validator checked); `history`: the items of the conversation so far (previous_response_id),
    placed before the request's own input."""
    messages: list[JSON] = []
    instructions = payload.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise invalid("instructions", "must be a string", "invalid_type")
        if instructions:
            messages.append({"role": "system", "content": instructions})
    if history:
        _items(history, "previous_response_id", messages, strict=False)
    _items(input_items(payload.get("input")), "input", messages, strict=True)
    if not messages:
        raise invalid("input", "must contain at least one item", "empty_array")
    canonical: JSON = {"model": payload["model"], "messages": messages}
    if payload.get("stream"):
        canonical["stream"] = True
    _given(payload, _SAME, canonical)
    _limits(payload, canonical)
    _tools(payload, canonical)
    _text(payload.get("text"), canonical)
    _reasoning(payload.get("reasoning"), canonical)
    return canonical


def input_items(value: Any) -> list[Any]:
    """The request's input as items: a string is one user message."""
    if value is None:
        raise invalid("input", "is required", "missing_required_parameter")
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if not isinstance(value, list):
        raise invalid("input", "must be a string or an array of items", "invalid_type")
    return value


def _items(items: list[Any], where: str, out: list[JSON], strict: bool) -> None:
    for i, item in enumerate(items):
        here = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise invalid(here, "must be an object", "invalid_type")
        kind = item.get("type", "message")
        if kind == "message":
            out.append(_message(item, here))
        elif kind == "function_call":
            _function_call(item, here, out)
        elif kind == "function_call_output":
            out.append(_function_output(item, here))
        elif kind == "reasoning" or (not strict and kind in OPENAI_ONLY_ITEMS):
            continue  # not something another provider can take back
        elif kind in OPENAI_ONLY_ITEMS:
            raise openai_only(f"{here}.type", f"items of type '{kind}'")
        else:
            raise invalid(f"{here}.type", f"unknown item type '{kind}'")


def _string(item: JSON, key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise invalid(f"{where}.{key}", "must be a string", "invalid_type")
    return value


def _message(item: JSON, where: str) -> JSON:
    role = item.get("role")
    if role not in _ROLES:
        raise invalid(f"{where}.role", "must be one of user, assistant, system, developer")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise invalid(f"{where}.content", "must be a string or an array of parts", "invalid_type")
    parts = [_part(part, f"{where}.content[{k}]") for k, part in enumerate(content)]
    if role != "user" and all(p["type"] == "text" for p in parts):  # text-only roles
        return {"role": role, "content": "".join(p["text"] for p in parts)}
    return {"role": role, "content": parts}


def _part(part: Any, where: str) -> JSON:
    if not isinstance(part, dict):
        raise invalid(where, "must be an object", "invalid_type")
    kind = part.get("type")
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": _string(part, "text", where)}
    if kind == "refusal":
        return {"type": "text", "text": _string(part, "refusal", where)}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            if part.get("file_id") is not None:
                raise openai_only(f"{where}.file_id", "images by file id")
            raise invalid(f"{where}.image_url", "must be a URL or a data URL", "invalid_type")
        image: JSON = {"url": url}
        detail = part.get("detail")
        if detail is not None:
            if detail not in ("low", "high", "auto"):
                raise invalid(f"{where}.detail", "must be low, high or auto")
            image["detail"] = detail
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        raise openai_only(f"{where}.type", "input_file parts")
    raise invalid(f"{where}.type", f"unknown content part type '{kind}'")


def _function_call(item: JSON, where: str, out: list[JSON]) -> None:
    """Consecutive calls are one assistant turn with several tool_calls (parallel calls)."""
    arguments = _string(item, "arguments", where)
    call = {
        "id": _string(item, "call_id", where),
        "type": "function",
        "function": {"name": _string(item, "name", where), "arguments": arguments},
    }
    last = out[-1] if out else None
    if (
        last is not None
        and last.get("role") == "assistant"
        and isinstance(last.get("content"), str | None)
    ):
        last.setdefault("tool_calls", []).append(call)
        return
    out.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _function_output(item: JSON, where: str) -> JSON:
    output = item.get("output")
    if isinstance(output, list):  # text parts joined: tool messages carry text
        output = "".join(
            p.get("text", "")
            for p in output
            if isinstance(p, dict) and p.get("type") == "input_text"
        )
    if not isinstance(output, str):
        raise invalid(f"{where}.output", "must be a string", "invalid_type")
    return {"role": "tool", "tool_call_id": _string(item, "call_id", where), "content": output}


def _limits(payload: JSON, canonical: JSON) -> None:
    limit = payload.get("max_output_tokens")
    if limit is not None:
        if not is_int(limit) or not 1 <= limit <= MAX_OUTPUT_TOKENS:
            raise invalid(
                "max_output_tokens", f"must be an integer between 1 and {MAX_OUTPUT_TOKENS}"
            )
        canonical["max_tokens"] = limit
    for key, highest in (("temperature", 2.0), ("top_p", 1.0)):
        value = payload.get(key)
        if value is not None and not (is_number(value) and 0 <= value <= highest):
            raise invalid(key, f"must be a number between 0 and {highest:g}")


def _tools(payload: JSON, canonical: JSON) -> None:
    tools = payload.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise invalid("tools", "must be an array", "invalid_type")
        converted = []
        for i, tool in enumerate(tools):
            where = f"tools[{i}]"
            if not isinstance(tool, dict):
                raise invalid(where, "must be an object", "invalid_type")
            if tool.get("type") != "function":
                raise openai_only(f"{where}.type", f"built-in tools ('{tool.get('type')}')")
            function: JSON = {"name": _string(tool, "name", where)}
            _given(tool, ("description", "parameters", "strict"), function)
            converted.append({"type": "function", "function": function})
        if converted:
            canonical["tools"] = converted
    choice = payload.get("tool_choice")
    if choice is None:
        return
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise invalid("tool_choice", "must be auto, none, required or a function")
        canonical["tool_choice"] = choice
        return
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = _string(choice, "name", "tool_choice")
        canonical["tool_choice"] = {"type": "function", "function": {"name": name}}
        return
    raise openai_only("tool_choice", "choosing a built-in tool")


def _given(source: JSON, keys: tuple[str, ...], out: JSON) -> None:
    """The keys `source` sets (not null), copied to `out`."""
    for key in keys:
        if source.get(key) is not None:
            out[key] = source[key]


def _text(text: Any, canonical: JSON) -> None:
    if text is None:
        return
    if not isinstance(text, dict):
        raise invalid("text", "must be an object", "invalid_type")
    fmt = text.get("format")
    if fmt is None:
        return
    if not isinstance(fmt, dict):
        raise invalid("text.format", "must be an object", "invalid_type")
    kind = fmt.get("type")
    if kind == "text":
        return
    if kind == "json_object":
        canonical["response_format"] = {"type": "json_object"}
        return
    if kind != "json_schema":
        raise invalid("text.format.type", "must be text, json_object or json_schema")
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise invalid("text.format.schema", "must be an object", "invalid_type")
    spec: JSON = {"name": _string(fmt, "name", "text.format"), "schema": schema}
    _given(fmt, ("strict", "description"), spec)
    canonical["response_format"] = {"type": "json_schema", "json_schema": spec}


def _reasoning(reasoning: Any, canonical: JSON) -> None:
    if reasoning is None:
        return
    if not isinstance(reasoning, dict):
        raise invalid("reasoning", "must be an object", "invalid_type")
    effort = reasoning.get("effort")
    if effort is None:
        return
    if effort not in _EFFORTS:
        raise invalid("reasoning.effort", "must be one of " + ", ".join(sorted(_EFFORTS)))
    canonical["reasoning_effort"] = effort


def _plain_part(part: Any) -> bool:
    return not (
        isinstance(part, dict)
        and (part.get("type") == "input_file" or part.get("file_id") is not None)
    )


def _plain_item(item: Any) -> Any:
    if not isinstance(item, dict) or item.get("type") in OPENAI_ONLY_ITEMS:
        return None
    content = item.get("content")
    if isinstance(content, list):
        return {**item, "content": [p for p in content if _plain_part(p)]}
    return item


def without_openai_only(payload: JSON) -> JSON:
    """The request less what only OpenAI can serve (built-in tools, file inputs, item
    references): what the token estimates and the route's other checks read when only
    passthrough targets can serve it."""
    out = dict(payload)
    tools = payload.get("tools")
    if isinstance(tools, list):
        out["tools"] = [t for t in tools if isinstance(t, dict) and t.get("type") == "function"]
    choice = payload.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") != "function":
        del out["tool_choice"]
    items = payload.get("input")
    if isinstance(items, list):
        out["input"] = [kept for item in items if (kept := _plain_item(item)) is not None]
    return out
