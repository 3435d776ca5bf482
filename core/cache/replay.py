"""A stored complete answer replayed as its API's stream, for a streaming client.

Chat: the completion becomes canonical chunks (role and content, each tool call whole, the
finish reason, then the usage chunk) run through the same encoder a live stream uses
(core.api.relay.OpenAIStreamEncoder), so the client sees what a live stream sends, its
`stream_options.include_usage` honoured. Messages: the Message becomes Anthropic's event
sequence (message_start, one start/delta/stop per content block, message_delta, message_stop).
Responses: the `response` object becomes the Responses event sequence (response.created,
response.in_progress, per output item its added / part / delta / done events, then
response.completed or response.incomplete), numbered from 0 with every item event naming its
item, as a live stream is (core.api.responses.stream), so the SDK's stream helper takes it.
Nothing is priced: a hit costs nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson

from core.api.relay import OpenAIStreamEncoder
from core.wire.sse import encode_event

JSON = dict[str, Any]


def _chat_chunks(completion: JSON) -> Iterator[JSON]:
    base = {
        "id": completion.get("id"),
        "object": "chat.completion.chunk",
        "created": completion.get("created"),
        "model": completion.get("model"),
    }
    if completion.get("system_fingerprint"):
        base["system_fingerprint"] = completion["system_fingerprint"]
    choices = [c for c in completion.get("choices") or () if isinstance(c, dict)]
    for choice in choices:
        message = choice.get("message") or {}
        delta: JSON = {"role": message.get("role") or "assistant"}
        for name in ("content", "reasoning_content", "refusal"):
            if message.get(name) is not None:
                delta[name] = message[name]
        calls = message.get("tool_calls")
        if isinstance(calls, list) and calls:
            delta["tool_calls"] = [
                {**call, "index": k} for k, call in enumerate(calls) if isinstance(call, dict)
            ]
        index = choice.get("index", 0)
        yield {**base, "choices": [{"index": index, "delta": delta, "finish_reason": None}]}
        finish = {"index": index, "delta": {}, "finish_reason": choice.get("finish_reason")}
        yield {**base, "choices": [finish]}
    usage = completion.get("usage")
    if isinstance(usage, dict) and usage:
        yield {**base, "choices": [], "usage": usage}


async def chat_stream(body: bytes, include_usage: bool) -> AsyncIterator[bytes]:
    """The stored completion `body` as OpenAI's SSE stream."""
    encoder = OpenAIStreamEncoder(include_usage, None)
    for chunk in _chat_chunks(orjson.loads(body)):
        out = encoder.chunk(chunk)
        if out:
            yield out
    yield encoder.done()


def _block_events(index: int, block: JSON) -> Iterator[bytes]:
    kind = block.get("type")
    if kind == "text":
        start: JSON = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": block.get("text", "")}]
    elif kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [{"type": "thinking_delta", "thinking": block.get("thinking", "")}]
        if block.get("signature"):
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
    elif kind in ("tool_use", "server_tool_use"):
        start = {**block, "input": {}}
        partial = orjson.dumps(block.get("input") or {}).decode()
        deltas = [{"type": "input_json_delta", "partial_json": partial}]
    else:  # a block with no deltas (redacted thinking, results): sent whole at its start
        start, deltas = block, []
    yield encode_event(
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": start},
    )
    for delta in deltas:
        event = {"type": "content_block_delta", "index": index, "delta": delta}
        yield encode_event("content_block_delta", event)
    yield encode_event("content_block_stop", {"type": "content_block_stop", "index": index})


async def messages_stream(body: bytes) -> AsyncIterator[bytes]:
    """The stored Message `body` as Anthropic's event stream."""
    message: JSON = orjson.loads(body)
    found = message.get("usage")
    usage: JSON = found if isinstance(found, dict) else {}
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = {**usage, "output_tokens": 0}
    yield encode_event("message_start", {"type": "message_start", "message": start})
    for index, block in enumerate(message.get("content") or ()):
        if isinstance(block, dict):
            for event in _block_events(index, block):
                yield event
    delta = {
        "type": "message_delta",
        "delta": {
            "stop_reason": message.get("stop_reason"),
            "stop_sequence": message.get("stop_sequence"),
        },
        "usage": usage,
    }
    yield encode_event("message_delta", delta)
    yield encode_event("message_stop", {"type": "message_stop"})


class _Numbered:
    """Responses events numbered from 0 (`sequence_number`), as a live stream numbers them."""

    __slots__ = ("next",)

    def __init__(self) -> None:
        self.next = 0

    def __call__(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.next, **fields}
        self.next += 1
        return encode_event(kind, payload)


_PART_DELTAS = {
    "output_text": ("text", "response.output_text"),
    "refusal": ("refusal", "response.refusal"),
}


def _message_events(event: _Numbered, where: JSON, item: JSON) -> Iterator[bytes]:
    for k, part in enumerate(item.get("content") or ()):
        if not isinstance(part, dict):
            continue
        field, name = _PART_DELTAS.get(str(part.get("type")), ("", ""))
        if not field:  # a part with no deltas: added and done whole
            yield event("response.content_part.added", **where, content_index=k, part=part)
            yield event("response.content_part.done", **where, content_index=k, part=part)
            continue
        text = str(part.get(field) or "")
        empty = {**part, field: ""}
        extra: JSON = {"logprobs": []} if field == "text" else {}
        yield event("response.content_part.added", **where, content_index=k, part=empty)
        yield event(f"{name}.delta", **where, content_index=k, delta=text, **extra)
        yield event(f"{name}.done", **where, content_index=k, **{field: text}, **extra)
        yield event("response.content_part.done", **where, content_index=k, part=part)


def _reasoning_events(event: _Numbered, where: JSON, item: JSON) -> Iterator[bytes]:
    for k, part in enumerate(item.get("summary") or ()):
        if not isinstance(part, dict):
            continue
        text = str(part.get("text") or "")
        empty = {**part, "text": ""}
        yield event("response.reasoning_summary_part.added", **where, summary_index=k, part=empty)
        yield event("response.reasoning_summary_text.delta", **where, summary_index=k, delta=text)
        yield event("response.reasoning_summary_text.done", **where, summary_index=k, text=text)
        yield event("response.reasoning_summary_part.done", **where, summary_index=k, part=part)


def _item_events(event: _Numbered, index: int, item: JSON) -> Iterator[bytes]:
    """One output item: added (empty, in progress), its parts and deltas, done (whole)."""
    kind = item.get("type")
    where = {"item_id": item.get("id"), "output_index": index}
    added = {**item, "status": "in_progress"} if "status" in item else dict(item)
    if kind == "message":
        added["content"] = []
    elif kind == "reasoning":
        added["summary"] = []
    elif kind == "function_call":
        added["arguments"] = ""
    yield event("response.output_item.added", output_index=index, item=added)
    if kind == "message":
        yield from _message_events(event, where, item)
    elif kind == "reasoning":
        yield from _reasoning_events(event, where, item)
    elif kind == "function_call":
        arguments = str(item.get("arguments") or "")
        yield event("response.function_call_arguments.delta", **where, delta=arguments)
        name = item.get("name")
        yield event(
            "response.function_call_arguments.done", **where, name=name, arguments=arguments
        )
    yield event("response.output_item.done", output_index=index, item=item)


async def responses_stream(response: JSON) -> AsyncIterator[bytes]:
    """A complete `response` object as the Responses API's event stream."""
    event = _Numbered()
    start = {**response, "status": "in_progress", "output": [], "usage": None}
    start["incomplete_details"] = None
    yield event("response.created", response=start) + event("response.in_progress", response=start)
    for index, item in enumerate(response.get("output") or ()):
        if isinstance(item, dict):
            yield b"".join(_item_events(event, index, item))
    ended = "response.completed" if response.get("status") == "completed" else "response.incomplete"
    yield event(ended, response=response)
