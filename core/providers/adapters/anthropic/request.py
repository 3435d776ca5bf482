"""Canonical (OpenAI chat) request -> Anthropic Messages request body.

The shapes differ in ways that silently lose meaning if done loosely: system prompts are
top-level, tool results are user-turn blocks that must lead their turn, same-role turns are
merged, tool arguments travel as parsed objects, and max_tokens is mandatory. Anything we cannot
express faithfully is a 400 naming the field, never a silent drop.

Choices worth knowing:
- response_format json_schema -> output_config.format (native structured outputs); json_object
  has no Anthropic equivalent and is declared unsupported, so strict routes reject it.
- reasoning_effort low/medium/high -> thinking.budget_tokens (options.thinking_budgets); the
  budget is part of max_tokens on both APIs, so a client limit caps the budget.
- temperature is clamped to Anthropic's 0..1 range (OpenAI allows up to 2).
- Assistant messages may carry `thinking_blocks` (as this adapter returns them) so thinking
  signatures survive a tool-call round trip.
"""

from __future__ import annotations

from typing import Any

import orjson

from core.providers.adapters.anthropic.settings import (
    MIN_THINKING_BUDGET,
    Settings,
    default_max_tokens,
)
from core.providers.adapters.base import JSON, ProviderError, stop_sequences
from shared.errors import FailureClass

_NO_THINKING = frozenset({"none", "minimal"})
_EFFORT_BUDGET = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high"}
_EMPTY_SCHEMA: JSON = {"type": "object", "properties": {}}


def invalid(message: str, param: str, code: str = "invalid_value") -> ProviderError:
    return ProviderError(400, message, FailureClass.CLIENT_ERROR, code=code, param=param)


def unsupported(message: str, param: str) -> ProviderError:
    return invalid(message, param, "unsupported_value")


def build_body(canonical: JSON, model: str, settings: Settings) -> JSON:
    system, messages = convert_messages(canonical["messages"])
    body: JSON = {"model": model, "max_tokens": 0, "messages": messages}
    if system:
        plain = len(system) == 1 and "cache_control" not in system[0]
        body["system"] = system[0]["text"] if plain else system
    limit = canonical.get("max_completion_tokens") or canonical.get("max_tokens")
    fallback = settings.default_max_tokens or default_max_tokens(model)
    thinking = _thinking(canonical.get("reasoning_effort"), limit, fallback, settings)
    if thinking is not None:
        body["thinking"] = thinking
        limit = limit or thinking["budget_tokens"] + fallback
    body["max_tokens"] = limit or fallback
    _sampling(canonical, body)
    _tools(canonical, body, settings)
    _response_format(canonical.get("response_format"), body)
    if canonical.get("stream"):
        body["stream"] = True
    return body


def _sampling(canonical: JSON, body: JSON) -> None:
    temperature = canonical.get("temperature")
    if temperature is not None:
        if not isinstance(temperature, int | float) or isinstance(temperature, bool):
            raise invalid("temperature must be a number", "temperature")
        body["temperature"] = min(max(float(temperature), 0.0), 1.0)
    top_p = canonical.get("top_p")
    if top_p is not None:
        if not isinstance(top_p, int | float) or isinstance(top_p, bool):
            raise invalid("top_p must be a number", "top_p")
        body["top_p"] = top_p
    stop = stop_sequences(canonical, invalid)
    if stop:
        body["stop_sequences"] = stop
    user = canonical.get("user")
    if user is not None:
        if not isinstance(user, str):
            raise invalid("user must be a string", "user")
        body["metadata"] = {"user_id": user}


def _thinking(effort: Any, limit: int | None, fallback: int, settings: Settings) -> JSON | None:
    if effort is None or effort in _NO_THINKING:
        return None
    level = _EFFORT_BUDGET.get(effort) if isinstance(effort, str) else None
    if level is None:
        raise invalid(
            "reasoning_effort must be one of none, minimal, low, medium, high, xhigh",
            "reasoning_effort",
        )
    budget = settings.budgets[level]
    if limit is not None:
        if limit <= MIN_THINKING_BUDGET:
            raise invalid(
                f"max_tokens must be above {MIN_THINKING_BUDGET} when reasoning_effort is set "
                "(reasoning tokens count towards it)",
                "max_tokens",
            )
        budget = min(budget, limit - 1)
    return {"type": "enabled", "budget_tokens": budget}


def _response_format(response_format: Any, body: JSON) -> None:
    if response_format is None:
        return
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise invalid(
                "response_format.json_schema.schema must be an object",
                "response_format.json_schema.schema",
            )
        body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
        return
    raise unsupported(
        f"response_format type {kind!r} is not supported by this provider", "response_format"
    )


def _tools(canonical: JSON, body: JSON, settings: Settings) -> None:
    tools = canonical.get("tools")
    choice = canonical.get("tool_choice")
    if not tools:
        if choice not in (None, "none", "auto"):
            raise invalid("tool_choice requires tools", "tool_choice")
        return
    if not isinstance(tools, list):
        raise invalid("tools must be an array", "tools")
    body["tools"] = [_tool(tool, k, settings) for k, tool in enumerate(tools)]
    converted = _tool_choice(choice)
    if canonical.get("parallel_tool_calls") is False and converted["type"] != "none":
        converted["disable_parallel_tool_use"] = True
    elif choice is None:
        return  # Anthropic's default is auto; keep the body minimal
    body["tool_choice"] = converted


def _tool(tool: Any, k: int, settings: Settings) -> JSON:
    where = f"tools[{k}]"
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        raise unsupported(f"{where}: only function tools are supported", f"{where}.type")
    function = tool.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or not name:
        raise invalid(f"{where}.function.name is required", f"{where}.function.name")
    assert isinstance(function, dict)
    schema = function.get("parameters")
    if schema is not None and not isinstance(schema, dict):
        raise invalid(f"{where}.function.parameters must be an object", f"{where}.function")
    out: JSON = {"name": name, "input_schema": schema or _EMPTY_SCHEMA}
    description = function.get("description")
    if isinstance(description, str) and description:
        out["description"] = description
    if function.get("strict") is True and settings.structured_outputs:
        out["strict"] = True
    if isinstance(tool.get("cache_control"), dict):
        out["cache_control"] = tool["cache_control"]
    return out


def _tool_choice(choice: Any) -> JSON:
    if choice is None or choice == "auto":
        return {"type": "auto"}
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str) and name:
            return {"type": "tool", "name": name}
    raise invalid("tool_choice must be auto, none, required or a named function", "tool_choice")


# -- messages ---------------------------------------------------------------------------------


def convert_messages(messages: list[Any]) -> tuple[list[JSON], list[JSON]]:
    """(system text blocks, user/assistant turns with same-role neighbours merged)."""
    system: list[JSON] = []
    turns: list[JSON] = []
    for i, message in enumerate(messages):
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_system_blocks(message.get("content"), i))
        elif role == "user":
            blocks = _parts(message.get("content"), f"messages[{i}]", images=True)
            if not blocks:
                raise invalid(f"messages[{i}].content must not be empty", f"messages[{i}].content")
            _append(turns, "user", blocks)
        elif role == "assistant":
            blocks = _assistant_blocks(message, i)
            if blocks:  # an empty assistant turn carries nothing Anthropic would accept
                _append(turns, "assistant", blocks)
        elif role == "tool":
            _append_result(turns, _tool_result(message, i))
        else:
            raise unsupported(
                f"messages[{i}].role {role!r} is not supported; use tools and tool messages",
                f"messages[{i}].role",
            )
    return system, turns


def _append(turns: list[JSON], role: str, blocks: list[JSON]) -> None:
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _append_result(turns: list[JSON], block: JSON) -> None:
    """Tool results must lead their user turn, before any text in it."""
    if not turns or turns[-1]["role"] != "user":
        turns.append({"role": "user", "content": [block]})
        return
    content: list[JSON] = turns[-1]["content"]
    position = 0
    while position < len(content) and content[position]["type"] == "tool_result":
        position += 1
    content.insert(position, block)


def _system_blocks(content: Any, i: int) -> list[JSON]:
    where = f"messages[{i}]"
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = _parts(content, where, images=False)
    return blocks


def _parts(content: Any, where: str, *, images: bool) -> list[JSON]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise invalid(f"{where}.content must be a string or an array", f"{where}.content")
    blocks: list[JSON] = []
    for j, part in enumerate(content):
        kind = part.get("type")
        part_where = f"{where}.content[{j}]"
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise invalid(f"{part_where}.text must be a string", f"{part_where}.text")
            if not text:
                continue
            block: JSON = {"type": "text", "text": text}
        elif kind == "image_url" and images:
            block = _image(part.get("image_url"), part_where)
        elif kind == "file" and images:
            block = _document(part.get("file"), part_where)
        else:
            raise unsupported(
                f"{part_where}: content of type {kind!r} is not supported here", part_where
            )
        if isinstance(part.get("cache_control"), dict):
            block["cache_control"] = part["cache_control"]
        blocks.append(block)
    return blocks


def _data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a base64 data: URL, or None."""
    header, sep, data = url.partition(",")
    if not sep or not header.startswith("data:") or not header.endswith(";base64"):
        return None
    media_type = header[5:-7].split(";")[0].strip().lower()
    return (media_type, data) if media_type and data else None


def _image(image_url: Any, where: str) -> JSON:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if isinstance(url, str) and url.startswith("data:"):
        parsed = _data_url(url)
        if parsed is not None:
            media_type, data = parsed
            return {
                "type": "image",
                "source": {"type": "base64", "media_type": media_type, "data": data},
            }
    elif isinstance(url, str) and url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise ProviderError(
        400,
        f"{where}.image_url.url must be an http(s) URL or a base64 data: URL",
        FailureClass.CLIENT_ERROR,
        code="invalid_image_url",
        param="messages",
    )


def _document(file: Any, where: str) -> JSON:
    data_url = file.get("file_data") if isinstance(file, dict) else None
    parsed = _data_url(data_url) if isinstance(data_url, str) else None
    if parsed is None or parsed[0] != "application/pdf":
        raise unsupported(
            f"{where}.file: only PDF files given inline as file_data "
            "(data:application/pdf;base64,...) are supported",
            where,
        )
    return {
        "type": "document",
        "source": {"type": "base64", "media_type": parsed[0], "data": parsed[1]},
    }


def _assistant_blocks(message: JSON, i: int) -> list[JSON]:
    where = f"messages[{i}]"
    blocks: list[JSON] = []
    thinking = message.get("thinking_blocks")
    if isinstance(thinking, list):
        for block in thinking:
            if (
                isinstance(block, dict)
                and block.get("type") == "thinking"
                and block.get("signature")
            ):
                blocks.append(
                    {
                        "type": "thinking",
                        "thinking": block.get("thinking") or "",
                        "signature": block["signature"],
                    }
                )
            elif isinstance(block, dict) and block.get("type") == "redacted_thinking":
                blocks.append({"type": "redacted_thinking", "data": block.get("data") or ""})
    content = message.get("content")
    if isinstance(content, list):
        # Assistant parts may be refusals; their text is what the model said.
        content = [
            {**p, "type": "text", "text": p.get("refusal") or ""}
            if isinstance(p, dict) and p.get("type") == "refusal"
            else p
            for p in content
        ]
    if content is not None:
        blocks.extend(_parts(content, where, images=False))
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise invalid(f"{where}.tool_calls must be an array", f"{where}.tool_calls")
    blocks.extend(_tool_use(call, f"{where}.tool_calls[{k}]") for k, call in enumerate(calls))
    return blocks


def _tool_use(call: Any, where: str) -> JSON:
    function = call.get("function") if isinstance(call, dict) else None
    call_id = call.get("id") if isinstance(call, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(call_id, str) or not call_id:
        raise invalid(f"{where}.id is required", f"{where}.id")
    if not isinstance(name, str) or not name:
        raise invalid(f"{where}.function.name is required", f"{where}.function.name")
    assert isinstance(function, dict)
    arguments = function.get("arguments")
    if isinstance(arguments, dict):
        parsed: Any = arguments
    elif arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        parsed = {}
    else:
        try:
            parsed = orjson.loads(arguments) if isinstance(arguments, str) else None
        except orjson.JSONDecodeError:
            parsed = None
    if not isinstance(parsed, dict):
        raise invalid(
            f"{where}.function.arguments must be a JSON object encoded as a string",
            f"{where}.function.arguments",
        )
    return {"type": "tool_use", "id": call_id, "name": name, "input": parsed}


def _tool_result(message: JSON, i: int) -> JSON:
    where = f"messages[{i}]"
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise invalid(f"{where}.tool_call_id is required", f"{where}.tool_call_id")
    content = message.get("content")
    block: JSON = {"type": "tool_result", "tool_use_id": call_id}
    if isinstance(content, str):
        block["content"] = content
    else:
        block["content"] = _parts(content, where, images=True)
    return block
