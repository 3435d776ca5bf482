"""Anthropic Messages request -> canonical (OpenAI chat) request, for non-Anthropic targets.

Pure. Fields OpenAI has no universal equivalent for are not guessed at: `top_k` goes only to
targets that declare it, `thinking` becomes a reasoning_effort hint dropped by targets that
cannot take it, and anything untranslatable is listed so planning can apply the route's
strict (400 naming it) or lenient (dropped and reported) rule per target.

Prompt-cache marks (cache_control) keep their position and TTL: on the canonical content part,
tool, or message (a tool result's, or an assistant turn whose blocks are joined into one text),
where core.wire.prompt_cache reads them for every adapter.

Known losses, by design: thinking blocks in the history (OpenAI hosts do
not accept them back), a tool_result's is_error flag (its text usually says so), and images
inside tool results move to a user message right after the tool messages, because OpenAI tool
messages carry text only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from core.providers.adapters.base import JSON
from core.providers.upstream import translating
from core.wire.prompt_cache import MARK, check_mark
from shared.errors import GatewayError, bad_request

# Mapped onto canonical fields (or consumed by the gateway) below.
_TRANSLATED = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stream",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "metadata",
        "thinking",
    }
)
# Scheduling hints with no effect on the answer: safe to ignore for any target.
_IGNORED = frozenset({"service_tier"})
# A thinking budget -> the OpenAI reasoning_effort it is closest to.
_EFFORT_STEPS = ((4096, "low"), (16384, "medium"))


@dataclass(slots=True)
class Translated:
    canonical: JSON
    # Canonical params sent only to targets that declare them (caps.params); else strict/lenient.
    optional: dict[str, Any] = field(default_factory=dict)
    # Sent to targets that can take them, silently dropped for the rest (client field, value).
    hints: dict[str, tuple[str, Any]] = field(default_factory=dict)
    # Client fields with no canonical equivalent at all.
    unsupported: tuple[str, ...] = ()


def _unsupported_block(where: str, kind: str) -> GatewayError:
    return GatewayError(
        400,
        f"{where}: content blocks of type '{kind}' can only be served by Anthropic targets",
        param=where,
        code="unsupported_content",
    )


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise bad_request(f"{where}: must be a string", param=where, code="invalid_type")
    return value


def _marked(item: JSON, block: Any, where: str) -> JSON:
    """`item` with the block's prompt-cache mark, checked (a 400 naming it), if it has one."""
    if isinstance(block, dict) and MARK in block:
        check_mark(block[MARK], where)
        item[MARK] = block[MARK]
    return item


def to_canonical(payload: JSON) -> Translated:
    """Raises GatewayError (400 naming the field) for content no OpenAI-shaped target can take;
    a shape validation (core.api.messages.validate) missed is a 400 too, logged for operators."""
    with translating("OpenAI-shaped targets"):
        return _to_canonical(payload)


def _to_canonical(payload: JSON) -> Translated:
    messages: list[JSON] = []
    system = payload.get("system")
    if isinstance(system, str) and system:
        messages.append({"role": "system", "content": system})
    elif isinstance(system, list) and any(isinstance(b, dict) and MARK in b for b in system):
        parts = [_marked({"type": "text", "text": b["text"]}, b, "system") for b in system]
        messages.append({"role": "system", "content": parts})
    elif isinstance(system, list) and system:
        messages.append({"role": "system", "content": "\n".join(b["text"] for b in system)})
    for i, message in enumerate(payload["messages"]):
        if message["role"] == "user":
            _user(message["content"], f"messages[{i}]", messages)
        else:
            messages.append(_assistant(message["content"], f"messages[{i}]"))
    canonical: JSON = {
        "model": payload["model"],
        "messages": messages,
        "max_tokens": payload["max_tokens"],
    }
    if payload.get("stream"):
        canonical["stream"] = True
    for key in ("temperature", "top_p"):
        if payload.get(key) is not None:
            canonical[key] = payload[key]
    stop = payload.get("stop_sequences")
    if stop:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise bad_request(
                "stop_sequences: must be an array of strings",
                param="stop_sequences",
                code="invalid_type",
            )
        canonical["stop"] = stop
    user = _user_id(payload.get("metadata"))
    if user is not None:
        canonical["user"] = user
    _tools(payload, canonical)
    translated = Translated(canonical)
    if payload.get("top_k") is not None:
        translated.optional["top_k"] = payload["top_k"]
    effort = _effort(payload.get("thinking"))
    if effort is not None:
        translated.hints["reasoning_effort"] = ("thinking", effort)
    translated.unsupported = tuple(k for k in payload if k not in _TRANSLATED and k not in _IGNORED)
    return translated


def _user_id(metadata: Any) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise bad_request("metadata: must be an object", param="metadata", code="invalid_type")
    user = metadata.get("user_id")
    return user if isinstance(user, str) and user else None


def _effort(thinking: Any) -> str | None:
    if thinking is None:
        return None
    if not isinstance(thinking, dict) or not isinstance(thinking.get("type"), str):
        raise bad_request(
            "thinking: must be an object with a type", param="thinking", code="invalid_type"
        )
    kind = thinking["type"]
    if kind == "disabled":
        return None
    if kind == "adaptive":
        return "medium"
    budget = thinking.get("budget_tokens")
    if kind != "enabled" or not isinstance(budget, int) or isinstance(budget, bool):
        raise bad_request(
            "thinking: expected {type: enabled, budget_tokens: int}, disabled or adaptive",
            param="thinking",
            code="invalid_value",
        )
    for limit, effort in _EFFORT_STEPS:
        if budget < limit:
            return effort
    return "high"


def _user(content: Any, where: str, out: list[JSON]) -> None:
    """Tool results become tool messages first (OpenAI wants them right after the call)."""
    if isinstance(content, str):
        out.append({"role": "user", "content": content})
        return
    parts: list[JSON] = []
    late_images: list[JSON] = []
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = block["type"]
        if kind == "tool_result":
            out.append(_marked(_tool_message(block, at, late_images), block, at))
        elif kind == "text":
            text = _string(block.get("text"), f"{at}.text")
            parts.append(_marked({"type": "text", "text": text}, block, at))
        elif kind == "image":
            parts.append(_marked(_image(block.get("source"), f"{at}.source"), block, at))
        elif kind == "document":
            parts.append(_marked(_document(block, at), block, at))
        else:
            raise _unsupported_block(f"{at}.type", kind)
    parts = late_images + parts
    if len(parts) == 1 and parts[0]["type"] == "text" and MARK not in parts[0]:
        out.append({"role": "user", "content": parts[0]["text"]})
    elif parts:
        out.append({"role": "user", "content": parts})


def _tool_message(block: JSON, where: str, images: list[JSON]) -> JSON:
    call_id = _string(block.get("tool_use_id"), f"{where}.tool_use_id")
    content = block.get("content")
    if content is None or isinstance(content, str):
        return {"role": "tool", "tool_call_id": call_id, "content": content or ""}
    if not isinstance(content, list):
        raise bad_request(
            f"{where}.content: must be a string or an array of blocks",
            param=f"{where}.content",
            code="invalid_type",
        )
    texts: list[str] = []
    for k, part in enumerate(content):
        at = f"{where}.content[{k}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            texts.append(_string(part.get("text"), f"{at}.text"))
        elif kind == "image":
            images.append(_image(part.get("source"), f"{at}.source"))
        else:
            raise _unsupported_block(f"{at}.type", str(kind))
    return {"role": "tool", "tool_call_id": call_id, "content": "\n".join(texts)}


def _image(source: Any, where: str) -> JSON:
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64":
        media = _string(source.get("media_type"), f"{where}.media_type")
        data = _string(source.get("data"), f"{where}.data")
        return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}
    if kind == "url":
        url = _string(source.get("url"), f"{where}.url")
        return {"type": "image_url", "image_url": {"url": url}}
    raise bad_request(
        f"{where}: image sources must be base64 or url for this model",
        param=where,
        code="unsupported_content",
    )


def _document(block: JSON, where: str) -> JSON:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "text" and isinstance(source, dict):
        return {"type": "text", "text": _string(source.get("data"), f"{where}.source.data")}
    if (
        kind == "base64"
        and isinstance(source, dict)
        and source.get("media_type") == "application/pdf"
    ):
        data = _string(source.get("data"), f"{where}.source.data")
        title = block.get("title")
        name = title if isinstance(title, str) and title else "document.pdf"
        return {
            "type": "file",
            "file": {"filename": name, "file_data": f"data:application/pdf;base64,{data}"},
        }
    raise bad_request(
        f"{where}.source: only text and base64 PDF documents can be sent to this model",
        param=f"{where}.source",
        code="unsupported_content",
    )


def _assistant(content: Any, where: str) -> JSON:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[JSON] = []
    mark: JSON = {}
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = block["type"]
        _marked(mark, block, at)  # the joined turn carries its blocks' last mark
        if kind == "text":
            texts.append(_string(block.get("text"), f"{at}.text"))
        elif kind == "tool_use":
            calls.append(_tool_call(block, at))
        elif kind not in ("thinking", "redacted_thinking"):
            raise _unsupported_block(f"{at}.type", kind)
    message: JSON = {"role": "assistant", "content": "\n".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    elif message["content"] is None:
        message["content"] = ""
    return {**message, **mark}


def _tool_call(block: JSON, where: str) -> JSON:
    arguments = block.get("input", {})
    if not isinstance(arguments, dict):
        raise bad_request(
            f"{where}.input: must be an object", param=f"{where}.input", code="invalid_type"
        )
    return {
        "id": _string(block.get("id"), f"{where}.id"),
        "type": "function",
        "function": {
            "name": _string(block.get("name"), f"{where}.name"),
            "arguments": orjson.dumps(arguments).decode(),
        },
    }


def _tools(payload: JSON, canonical: JSON) -> None:
    tools = payload.get("tools")
    if not tools:
        return
    converted: list[JSON] = []
    for k, tool in enumerate(tools):
        where = f"tools[{k}]"
        kind = tool.get("type")
        if kind not in (None, "custom"):
            raise bad_request(
                f"{where}.type: server tools ('{kind}') can only be served by Anthropic targets",
                param=f"{where}.type",
                code="unsupported_tool",
            )
        function: JSON = {"name": _string(tool.get("name"), f"{where}.name")}
        if tool.get("description") is not None:
            function["description"] = _string(tool["description"], f"{where}.description")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise bad_request(
                f"{where}.input_schema: must be a JSON schema object",
                param=f"{where}.input_schema",
                code="invalid_type",
            )
        function["parameters"] = schema
        converted.append(_marked({"type": "function", "function": function}, tool, where))
    canonical["tools"] = converted
    choice = payload.get("tool_choice")
    if choice is None:
        return
    kind = choice["type"]
    if kind == "auto":
        canonical["tool_choice"] = "auto"
    elif kind == "any":
        canonical["tool_choice"] = "required"
    elif kind == "none":
        canonical["tool_choice"] = "none"
    elif kind == "tool":
        name = _string(choice.get("name"), "tool_choice.name")
        canonical["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        raise bad_request(
            "tool_choice.type: must be auto, any, tool or none",
            param="tool_choice.type",
            code="invalid_value",
        )
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        canonical["parallel_tool_calls"] = False
