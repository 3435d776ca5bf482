"""Canonical (OpenAI chat) request -> Converse request body.

Converse differs from OpenAI in ways that each cost someone an outage: turns must alternate
user/assistant (so same-role turns are merged and tool results become one user turn), images
must be bytes (no URLs), and any toolUse/toolResult in the history requires a toolConfig even
when the caller no longer offers tools.

Choices made here, on purpose:
- tool_choice "none": Converse has no such choice. Tools are left out, unless the history holds
  tool blocks; then they are still declared (Bedrock insists) and the model may call one.
- response_format json_schema/json_object is emulated with a forced tool, RESPONSE_TOOL, whose
  input schema is the requested schema; the parsers turn that call back into message content.
  With caller tools offered too, toolChoice becomes "any": the model either calls one of them or
  answers through RESPONSE_TOOL.
- Tool results are sent as text blocks without a `status` (only some models accept it).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import quote

import orjson
from yarl import URL

from core.providers.adapters.base import JSON, ProviderError, stop_sequences
from core.wire.prompt_cache import marked
from shared.errors import FailureClass

RESPONSE_TOOL = "interlock_response"
_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
_CACHE_POINT: JSON = {"cachePoint": {"type": "default"}}
# A mark kept as `1h` (only on models that take it: core.providers.adapters.cache_support).
_CACHE_POINT_1H: JSON = {"cachePoint": {"type": "default", "ttl": "1h"}}
_POINTS = (_CACHE_POINT, _CACHE_POINT_1H)


def _cache_point(ttl: str) -> JSON:
    """The cache point ending a prefix marked with `ttl` (5m: Converse's default, no field)."""
    return _CACHE_POINT_1H if ttl == "1h" else _CACHE_POINT


def _is_point(block: JSON) -> bool:
    return any(block is point for point in _POINTS)


_ANY_OBJECT: JSON = {"type": "object", "properties": {}}


def invalid(message: str, param: str) -> ProviderError:
    return ProviderError(400, message, FailureClass.CLIENT_ERROR, param=param, code="invalid_value")


@lru_cache(maxsize=4096)
def model_url(base: str, model: str, stream: bool) -> str:
    return operation_url(base, model, "converse-stream" if stream else "converse")


def operation_url(base: str, model: str, operation: str) -> str:
    """The URL exactly as aiohttp will put it on the wire (yarl un-escapes ':' in paths), so
    SigV4 signs the path AWS will see; the model id itself is one escaped path segment."""
    return str(URL(f"{base}/model/{quote(model, safe='')}/{operation}"))


def response_format_schema(canonical: JSON) -> JSON | None:
    """The JSON schema RESPONSE_TOOL must take as input, or None when no format is asked."""
    fmt = canonical.get("response_format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise invalid("response_format must be an object", "response_format")
    kind = fmt.get("type")
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict):
            raise invalid("response_format.json_schema must be an object", "response_format")
        schema = spec.get("schema")
        if schema is None:
            return {"type": "object"}
        if not isinstance(schema, dict):
            raise invalid("response_format.json_schema.schema must be an object", "response_format")
        return schema
    if kind in (None, "text"):
        return None
    raise invalid(f"response_format type {kind!r} is not supported", "response_format")


def _text_parts(content: Any, where: str, *, images: bool) -> list[JSON]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise invalid(f"{where}.content must be a string or an array", f"{where}.content")
    blocks: list[JSON] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if not isinstance(text, str):
                raise invalid(f"{where}.content[{j}].{kind} must be a string", where)
            if text:
                blocks.append({"text": text})
        elif kind == "image_url" and images:
            blocks.append(_image(part, f"{where}.content[{j}]"))
        else:
            raise invalid(f"{where}.content[{j}]: content type {kind!r} is not supported", where)
        ttl = marked(part)
        if ttl and blocks and not _is_point(blocks[-1]):
            blocks.append(_cache_point(ttl))  # the prefix ends here (core.wire.prompt_cache)
    return blocks


def _image(part: JSON, where: str) -> JSON:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url.startswith("data:"):
        raise invalid(f"{where}: Bedrock needs image bytes; send a base64 data: URL", "messages")
    header, sep, data = url[5:].partition(",")
    media, *params = header.split(";")
    if not sep or "base64" not in params or not data:
        raise invalid(f"{where}: the image data: URL must be base64-encoded", "messages")
    image_format = _IMAGE_FORMATS.get(media.strip().lower())
    if image_format is None:
        raise invalid(f"{where}: image type {media!r} is not supported", "messages")
    return {"image": {"format": image_format, "source": {"bytes": data}}}


def _tool_uses(message: JSON, where: str, names: set[str]) -> list[JSON]:
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise invalid(f"{where}.tool_calls must be an array", f"{where}.tool_calls")
    blocks = []
    for j, call in enumerate(calls):
        at = f"{where}.tool_calls[{j}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise invalid(f"{at}.function.name is required", at)
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            raise invalid(f"{at}.id is required", at)
        arguments = function.get("arguments") or ""
        try:
            tool_input = orjson.loads(arguments) if arguments.strip() else {}
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            raise invalid(f"{at}.function.arguments must be JSON text", at) from None
        names.add(function["name"])
        blocks.append(
            {"toolUse": {"toolUseId": call_id, "name": function["name"], "input": tool_input}}
        )
    return blocks


def _tool_result(message: JSON, where: str) -> JSON:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise invalid(f"{where}.tool_call_id is required", f"{where}.tool_call_id")
    content = message.get("content")
    blocks = (
        [{"text": content}]
        if isinstance(content, str)
        else _text_parts(content, where, images=False)
    )
    return {"toolResult": {"toolUseId": call_id, "content": blocks}}


def _tool_result_blocks(result: JSON) -> list[JSON]:
    """A tool result, and the cache point a marked part of it asked for after it (a cachePoint
    may not sit inside a toolResult)."""
    inner = result["toolResult"]["content"]
    points = [b for b in inner if _is_point(b)]
    if not points:
        return [result]
    result["toolResult"]["content"] = [b for b in inner if not _is_point(b)]
    return [result, points[-1]]


def convert_messages(messages: list[JSON]) -> tuple[list[JSON], list[JSON], set[str], bool]:
    """(system blocks, alternating turns, tool names called in the history, whether the history
    holds any tool block at all)."""
    system: list[JSON] = []
    turns: list[JSON] = []
    history_tools: set[str] = set()
    tool_blocks = False
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system.extend(_text_parts(content, where, images=False))
            continue
        if role == "user":
            blocks = _text_parts(content, where, images=True)
        elif role == "assistant":
            blocks = _text_parts(content, where, images=False)
            uses = _tool_uses(message, where, history_tools)
            tool_blocks = tool_blocks or bool(uses)
            blocks.extend(uses)
        elif role == "tool":
            role = "user"
            blocks = _tool_result_blocks(_tool_result(message, where))
            tool_blocks = True
        else:
            raise invalid(f"{where}.role {role!r} is not supported by Bedrock", f"{where}.role")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns, history_tools, tool_blocks


def _tool_specs(tools: Any) -> list[JSON]:
    if not isinstance(tools, list):
        raise invalid("tools must be an array", "tools")
    specs = []
    for j, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise invalid(f"tools[{j}]: only function tools are supported", "tools")
        function = tool.get("function")
        if not isinstance(function, dict):
            raise invalid(f"tools[{j}]: only function tools are supported", "tools")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise invalid(f"tools[{j}].function.name is required", "tools")
        if name == RESPONSE_TOOL:
            raise invalid(f"tools[{j}]: the tool name {name!r} is reserved", "tools")
        spec: JSON = {
            "name": name,
            "inputSchema": {"json": function.get("parameters") or _ANY_OBJECT},
        }
        description = function.get("description")
        if isinstance(description, str) and description:
            spec["description"] = description
        specs.append({"toolSpec": spec})
        ttl = marked(tool)
        if ttl:
            specs.append(_cache_point(ttl))
    return specs


def _named_choice(choice: Any) -> str | None:
    if choice is None or choice in ("auto", "required", "none"):
        return None
    function = choice.get("function") if isinstance(choice, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise invalid("tool_choice must be auto, required, none or a named function", "tool_choice")
    name: str = function["name"]
    return name


def tool_config(canonical: JSON, history_tools: set[str], tool_blocks: bool) -> JSON | None:
    tools = canonical.get("tools")
    user_specs = _tool_specs(tools) if tools else []
    choice = canonical.get("tool_choice")
    named = _named_choice(choice)
    offered = [] if choice == "none" else user_specs
    schema = response_format_schema(canonical)
    specs = list(offered)
    tool_choice: JSON | None = None
    if schema is not None:
        specs.append(
            {
                "toolSpec": {
                    "name": RESPONSE_TOOL,
                    "description": "Give your final answer by calling this tool: its input is "
                    "the answer, as JSON matching the schema.",
                    "inputSchema": {"json": schema},
                }
            }
        )
        if not offered:
            tool_choice = {"tool": {"name": RESPONSE_TOOL}}
        else:
            tool_choice = {"tool": {"name": named}} if named else {"any": {}}
    elif offered:
        if named:
            tool_choice = {"tool": {"name": named}}
        elif choice == "required":
            tool_choice = {"any": {}}
        elif choice == "auto":
            tool_choice = {"auto": {}}
    if not specs and tool_blocks:
        # Bedrock rejects tool blocks in the history without a toolConfig.
        specs = user_specs or [
            {"toolSpec": {"name": name, "inputSchema": {"json": _ANY_OBJECT}}}
            for name in sorted(history_tools)
        ]
    if not specs:
        return None
    config: JSON = {"tools": specs}
    if tool_choice is not None:
        config["toolChoice"] = tool_choice
    return config


def inference_config(canonical: JSON) -> JSON | None:
    config: JSON = {}
    max_tokens = canonical.get("max_completion_tokens") or canonical.get("max_tokens")
    if max_tokens is not None:
        config["maxTokens"] = max_tokens
    for ours, theirs in (("temperature", "temperature"), ("top_p", "topP")):
        value = canonical.get(ours)
        if value is not None:
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise invalid(f"{ours} must be a number", ours)
            config[theirs] = value
    stop = stop_sequences(canonical, invalid)
    if stop:
        config["stopSequences"] = stop
    return config or None


def converse_body(canonical: JSON) -> JSON:
    system, turns, history_tools, tool_blocks = convert_messages(canonical["messages"])
    body: JSON = {"messages": turns}
    if system:
        body["system"] = system
    inference = inference_config(canonical)
    if inference:
        body["inferenceConfig"] = inference
    tools = tool_config(canonical, history_tools, tool_blocks)
    if tools:
        body["toolConfig"] = tools
    return body
