"""A streamed answer, as the client received it, assembled into its complete form for the
cache (so a later complete request can be answered from a stream, and the reverse).

Only a stream that ended well is assembled: OpenAI's ends with `data: [DONE]`, Anthropic's with
message_stop; an error event anywhere (a cut stream) gives None and nothing is stored. The
cost field the gateway adds to a stream's usage is left out (a hit costs nothing).
"""

from __future__ import annotations

from typing import Any

import orjson

from core.spend.quote import COST_FIELD

JSON = dict[str, Any]


def _events(raw: bytes) -> list[JSON] | None:
    """Every `data:` payload but [DONE]; None if the stream did not end with one, or did not
    end at all, or carried an error."""
    events: list[JSON] = []
    for line in raw.split(b"\n"):
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            events.append({"type": "[DONE]"})
            continue
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(event, dict) or "error" in event:
            return None
        events.append(event)
    return events


def _without_cost(usage: Any) -> Any:
    if isinstance(usage, dict) and COST_FIELD in usage:
        return {k: v for k, v in usage.items() if k != COST_FIELD}
    return usage


def _merge_call(calls: dict[int, JSON], fragment: JSON) -> None:
    call = calls.setdefault(
        int(fragment.get("index", 0)),
        {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
    )
    if fragment.get("id"):
        call["id"] = fragment["id"]
    function = fragment.get("function") or {}
    call["function"]["name"] += function.get("name") or ""
    call["function"]["arguments"] += function.get("arguments") or ""


def chat_completion(raw: bytes, usage: JSON | None) -> JSON | None:
    """The chat completion an OpenAI stream amounts to; `usage`: the stream's final canonical
    usage (the client may not have asked to see it)."""
    events = _events(raw)
    if not events or events[-1].get("type") != "[DONE]":
        return None
    head: JSON = {}
    choices: dict[int, JSON] = {}
    calls: dict[int, dict[int, JSON]] = {}
    for chunk in events[:-1]:
        head = head or chunk
        for choice in chunk.get("choices") or ():
            index = int(choice.get("index", 0))
            out = choices.setdefault(index, {"index": index, "message": {}, "finish_reason": None})
            message, delta = out["message"], choice.get("delta") or {}
            if isinstance(delta.get("role"), str):
                message["role"] = delta["role"]
            for name in ("content", "reasoning_content", "refusal"):
                if isinstance(delta.get(name), str):
                    message[name] = (message.get(name) or "") + delta[name]
            for fragment in delta.get("tool_calls") or ():
                _merge_call(calls.setdefault(index, {}), fragment)
            if choice.get("finish_reason"):
                out["finish_reason"] = choice["finish_reason"]
        if chunk.get("usage"):
            usage = usage or chunk["usage"]
    for index, out in choices.items():
        message = out["message"]
        message.setdefault("role", "assistant")
        message.setdefault("content", None)
        if index in calls:
            message["tool_calls"] = [calls[index][k] for k in sorted(calls[index])]
    completion = {
        "id": head.get("id"),
        "object": "chat.completion",
        "created": head.get("created"),
        "model": head.get("model"),
        "choices": [choices[k] for k in sorted(choices)],
        "usage": _without_cost(usage),
    }
    if head.get("system_fingerprint"):
        completion["system_fingerprint"] = head["system_fingerprint"]
    return completion


def _apply_delta(block: JSON, delta: JSON, partial: dict[int, str], index: int) -> None:
    kind = delta.get("type")
    if kind == "text_delta":
        block["text"] = block.get("text", "") + (delta.get("text") or "")
    elif kind == "thinking_delta":
        block["thinking"] = block.get("thinking", "") + (delta.get("thinking") or "")
    elif kind == "signature_delta":
        block["signature"] = delta.get("signature") or ""
    elif kind == "input_json_delta":
        partial[index] = partial.get(index, "") + (delta.get("partial_json") or "")


def anthropic_message(raw: bytes) -> JSON | None:
    """The Message an Anthropic event stream amounts to."""
    events = _events(raw)
    if not events or events[-1].get("type") != "message_stop":
        return None
    message: JSON | None = None
    blocks: dict[int, JSON] = {}
    partial: dict[int, str] = {}
    for event in events:
        kind = event.get("type")
        if kind == "message_start":
            message = dict(event.get("message") or {})
        elif kind == "content_block_start":
            blocks[int(event.get("index", 0))] = dict(event.get("content_block") or {})
        elif kind == "content_block_delta":
            index = int(event.get("index", 0))
            _apply_delta(blocks.setdefault(index, {}), event.get("delta") or {}, partial, index)
        elif kind == "message_delta" and message is not None:
            message.update(event.get("delta") or {})
            message["usage"] = {**(message.get("usage") or {}), **(event.get("usage") or {})}
    if message is None:
        return None
    for index, text in partial.items():
        try:
            blocks[index]["input"] = orjson.loads(text) if text else {}
        except orjson.JSONDecodeError:
            return None
    message["content"] = [blocks[k] for k in sorted(blocks)]
    message["usage"] = _without_cost(message.get("usage"))
    return message
