"""Canonical (OpenAI chat) request -> Gemini GenerateContentRequest body.

Gemini has two roles (user, model) that must alternate, one system instruction, function
results as `functionResponse` parts that name the function (OpenAI only quotes the call id),
and binary media inline. What cannot be expressed is a 400 naming the field, never dropped.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from core.providers.adapters.base import JSON, ProviderError, stop_sequences
from core.providers.adapters.gemini.calls import signature_of
from core.providers.adapters.gemini.schema import to_gemini_schema
from core.providers.adapters.gemini.settings import Settings
from shared.errors import FailureClass

# The top-level OpenAI params this adapter maps (besides model/messages/stream/stream_options).
PARAMS = frozenset(
    {
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "n",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "response_format",
        "reasoning_effort",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
    }
)

_SIMPLE = (
    ("temperature", "temperature"),
    ("top_p", "topP"),
    ("n", "candidateCount"),
    ("seed", "seed"),
    ("presence_penalty", "presencePenalty"),
    ("frequency_penalty", "frequencyPenalty"),
)
# reasoning_effort -> thinkingBudget (Gemini 2.x) or thinkingLevel (Gemini 3+).
_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 32768}
_LEVELS = {
    "none": "minimal",
    "minimal": "minimal",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
}
_GEMINI_MAJOR = re.compile(r"gemini-(\d+)")
_CHOICE_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
# gs:// URIs are passed by reference and need a MIME type; guessed from the extension.
_GS_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "heic": "image/heic",
    "heif": "image/heif",
    "pdf": "application/pdf",
}


def invalid(message: str, param: str) -> ProviderError:
    return ProviderError(
        400, message, FailureClass.CLIENT_ERROR, param=param, code="invalid_request_error"
    )


def build_body(canonical: JSON, model: str, settings: Settings) -> JSON:
    contents, system = _contents(canonical.get("messages") or [])
    if not contents and system:
        # Gemini needs at least one turn; a system-only request becomes the user's turn.
        contents, system = [{"role": "user", "parts": system}], []
    body: JSON = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    tools = canonical.get("tools")
    if tools:
        body["tools"] = _tools(tools)
    tool_config = _tool_config(canonical.get("tool_choice"), bool(tools))
    if tool_config is not None:
        body["toolConfig"] = tool_config
    if canonical.get("parallel_tool_calls") is False:
        raise invalid(
            "this model cannot be restricted to one tool call per turn; omit "
            "parallel_tool_calls or set it to true",
            "parallel_tool_calls",
        )
    config = _generation_config(canonical, model, settings)
    if config:
        body["generationConfig"] = config
    if settings.safety_settings:
        body["safetySettings"] = list(settings.safety_settings)
    return body


# ---- messages ------------------------------------------------------------------------------


def message_contents(messages: list[Any]) -> list[JSON]:
    """The `contents` of these messages alone; the contents of a prefix of a conversation are
    a prefix of its contents (the last turn may gain parts), which caching.py relies on."""
    return _contents(messages)[0]


def _contents(messages: list[Any]) -> tuple[list[JSON], list[JSON]]:
    system: list[JSON] = []
    contents: list[JSON] = []
    names: dict[str, str] = {}  # tool_call_id -> function name, from earlier assistant turns
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_text_parts(message.get("content"), where))
            continue
        if role == "user":
            gemini_role, parts = "user", _user_parts(message.get("content"), where)
        elif role == "assistant":
            gemini_role, parts = "model", _assistant_parts(message, where, names)
        elif role in ("tool", "function"):
            gemini_role, parts = "user", [_function_response(message, where, names)]
        else:
            raise invalid(f"{where}.role {role!r} is not supported", f"{where}.role")
        if not parts:
            continue  # Gemini rejects empty turns; an empty message carries nothing anyway
        if contents and contents[-1]["role"] == gemini_role:
            contents[-1]["parts"].extend(parts)  # Gemini wants alternating turns: merge
        else:
            contents.append({"role": gemini_role, "parts": parts})
    return contents, system


def _text_parts(content: Any, where: str) -> list[JSON]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if content is None:
        return []
    parts: list[JSON] = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if not isinstance(text, str):
                raise invalid(f"{where}.content[{j}].{kind} must be a string", f"{where}.content")
            if text:
                parts.append({"text": text})
        else:
            raise invalid(
                f"{where}.content[{j}]: content of type {kind!r} is not allowed here",
                f"{where}.content",
            )
    return parts


def _user_parts(content: Any, where: str) -> list[JSON]:
    if isinstance(content, str) or content is None:
        return _text_parts(content, where)
    parts: list[JSON] = []
    for j, part in enumerate(content):
        kind = part.get("type")
        param = f"{where}.content[{j}]"
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise invalid(f"{param}.text must be a string", f"{where}.content")
            if text:
                parts.append({"text": text})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            parts.append(_media(url, param))
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            data, fmt = audio.get("data"), audio.get("format")
            if not isinstance(data, str) or not isinstance(fmt, str):
                raise invalid(f"{param}.input_audio needs data and format", "messages")
            parts.append({"inlineData": {"mimeType": f"audio/{fmt}", "data": data}})
        elif kind == "file":
            file = part.get("file") or {}
            if not isinstance(file.get("file_data"), str):
                raise invalid(f"{param}.file: only inline file_data is supported", "messages")
            parts.append(_media(file["file_data"], param))
        else:
            raise invalid(f"{param}: content of type {kind!r} is not supported", "messages")
    return parts


def _media(url: Any, param: str) -> JSON:
    if not isinstance(url, str):
        raise invalid(f"{param}: expected a URL string", "messages")
    if url.startswith("data:"):
        header, comma, data = url.partition(",")
        mime = header[5:].split(";", 1)[0]
        if not comma or not header.endswith(";base64") or "/" not in mime:
            raise invalid(f"{param}: expected a base64 data URL", "messages")
        return {"inlineData": {"mimeType": mime, "data": data}}
    if url.startswith("gs://"):
        mime_type = _GS_TYPES.get(url.rpartition(".")[2].lower())
        if mime_type is None:
            raise invalid(f"{param}: cannot tell the media type of {url!r}", "messages")
        return {"fileData": {"mimeType": mime_type, "fileUri": url}}
    raise invalid(f"{param}: only data: URLs and gs:// URIs can be sent to Gemini", "messages")


def _assistant_parts(message: JSON, where: str, names: dict[str, str]) -> list[JSON]:
    parts = _text_parts(message.get("content"), where)
    for j, call in enumerate(message.get("tool_calls") or ()):
        param = f"{where}.tool_calls[{j}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise invalid(f"{param}.function is required", param)
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise invalid(f"{param}.function.name is required", param)
        part: JSON = {"functionCall": {"name": name, "args": _arguments(function, param)}}
        signature = signature_of(call)
        if signature:
            part["thoughtSignature"] = signature
        parts.append(part)
        if isinstance(call.get("id"), str):
            names[call["id"]] = name
    return parts


def _arguments(function: JSON, param: str) -> JSON:
    raw = function.get("arguments")
    if raw is None or raw == "":
        return {}
    if isinstance(raw, dict):
        return raw
    try:
        args = orjson.loads(raw) if isinstance(raw, str) else None
    except orjson.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        raise invalid(f"{param}.function.arguments must be a JSON object", param)
    return args


def _function_response(message: JSON, where: str, names: dict[str, str]) -> JSON:
    call_id = message.get("tool_call_id")
    name = names.get(call_id) if isinstance(call_id, str) else None
    name = name or message.get("name")
    if not isinstance(name, str) or not name:
        raise invalid(
            f"{where}.tool_call_id does not match a tool call of an earlier assistant message",
            f"{where}.tool_call_id",
        )
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(p["text"] for p in _text_parts(content, where))
    if not isinstance(content, str):
        content = ""
    try:
        value: Any = orjson.loads(content)
    except orjson.JSONDecodeError:
        value = content
    # Gemini's response is a Struct: anything but a JSON object is wrapped.
    response = value if isinstance(value, dict) else {"result": value}
    return {"functionResponse": {"name": name, "response": response}}


# ---- tools ---------------------------------------------------------------------------------


def _tools(tools: Any) -> list[JSON]:
    if not isinstance(tools, list):
        raise invalid("tools must be an array", "tools")
    declarations = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or tool.get("type", "function") != "function":
            raise invalid(f"tools[{i}]: only function tools are supported", f"tools[{i}]")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise invalid(f"tools[{i}].function.name is required", f"tools[{i}]")
        declaration: JSON = {"name": name}
        if isinstance(function.get("description"), str):
            declaration["description"] = function["description"]
        parameters = to_gemini_schema(function.get("parameters"))
        # Gemini rejects an OBJECT with no properties: a function without arguments has none.
        if parameters.get("properties"):
            declaration["parameters"] = parameters
        declarations.append(declaration)
    return [{"functionDeclarations": declarations}]


def _tool_config(choice: Any, has_tools: bool) -> JSON | None:
    if choice is None:
        return None
    if isinstance(choice, str) and choice in _CHOICE_MODES:
        if not has_tools:
            if choice == "required":
                raise invalid("tool_choice 'required' needs tools", "tool_choice")
            return None
        return {"functionCallingConfig": {"mode": _CHOICE_MODES[choice]}}
    if isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str) and name and has_tools:
            return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    raise invalid(
        "tool_choice must be auto, none, required, or a function named in tools", "tool_choice"
    )


# ---- generation config ---------------------------------------------------------------------


def _generation_config(canonical: JSON, model: str, settings: Settings) -> JSON:
    config: JSON = {}
    for ours, theirs in _SIMPLE:
        value = canonical.get(ours)
        if value is not None:
            config[theirs] = value
    max_tokens = canonical.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = canonical.get("max_tokens")
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    stop = stop_sequences(canonical, invalid)
    if stop:
        config["stopSequences"] = stop
    _response_format(canonical.get("response_format"), config)
    thinking = _thinking(canonical.get("reasoning_effort"), model, settings.include_thoughts)
    if thinking:
        config["thinkingConfig"] = thinking
    return config


def _response_format(value: Any, config: JSON) -> None:
    if value is None:
        return
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return
    if kind == "json_object":
        config["responseMimeType"] = "application/json"
        return
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise invalid("response_format.json_schema.schema is required", "response_format")
        config["responseMimeType"] = "application/json"
        config["responseSchema"] = to_gemini_schema(schema)
        return
    raise invalid(
        "response_format.type must be text, json_object or json_schema", "response_format"
    )


def _thinking(effort: Any, model: str, include_thoughts: bool) -> JSON:
    if effort is None:
        return {"includeThoughts": True} if include_thoughts else {}
    if effort not in _BUDGETS:
        raise invalid(f"reasoning_effort must be one of {', '.join(_BUDGETS)}", "reasoning_effort")
    major = _GEMINI_MAJOR.search(model)
    config: JSON
    if major and int(major.group(1)) >= 3:
        config = {"thinkingLevel": _LEVELS[effort]}
    else:
        config = {"thinkingBudget": _BUDGETS[effort]}
    # Thought summaries are what clients see as reasoning_content.
    if effort != "none" or include_thoughts:
        config["includeThoughts"] = True
    return config
