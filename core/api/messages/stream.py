"""Canonical chunks -> Anthropic SSE events, one explicit state machine per stream.

Anthropic content blocks are contiguous and never interleave, while OpenAI streams fragments
of parallel tool calls interleaved by `index`. The choice here: the first tool call streams
live; fragments of later calls are buffered. As soon as the live call's arguments form a
complete JSON document its block is closed and the next buffered call is promoted (its buffer
sent as one delta, then live). So sequential calls stream with no delay, interleaved ones
are reordered with the least buffering, and every tool_use block stays contiguous. Text that
arrives while a tool block is open (rare) is held until the tool calls are done.

message_start is sent on the first chunk with zero usage (OpenAI-shaped streams report usage
only at the end); message_delta carries the cumulative usage, which the SDK takes as final.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from core.api.messages.response import anthropic_usage, message_id, reasoning_text, stop_reason
from core.providers.adapters.base import JSON, ProviderError
from core.spend.quote import CostOf, with_cost
from core.wire.sse import encode_event
from shared.errors import FailureClass, GatewayError, anthropic_error_body

_PENDING, _LIVE, _CLOSED = 0, 1, 2
_MESSAGE_STOP = encode_event("message_stop", {"type": "message_stop"})
_BLOCK_STARTS: dict[str, JSON] = {
    "text": {"type": "text", "text": ""},
    "thinking": {"type": "thinking", "thinking": "", "signature": ""},
}
_DELTA_TYPES = {"text": ("text_delta", "text"), "thinking": ("thinking_delta", "thinking")}


def error_event(error: GatewayError) -> bytes:
    """The terminal event for a failure after the first byte: never a clean close."""
    overloaded = error.status in (503, 529) or error.failure_class is FailureClass.RATE_LIMIT
    kind = "overloaded_error" if overloaded else "api_error"
    return (
        b"event: error\ndata: " + anthropic_error_body(error.status, error.message, kind) + b"\n\n"
    )


@dataclass(slots=True)
class _Call:
    id: str
    name: str
    args: list[str] = field(default_factory=list)
    state: int = _PENDING


def _complete_json(parts: list[str]) -> bool:
    text = "".join(parts).rstrip()
    if not text or text[-1] not in "}]":  # arguments are an object: cheap early answer
        return False
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


class AnthropicStreamEncoder:
    """A relay.StreamEncoder for Anthropic clients."""

    __slots__ = (
        "_calls",
        "_cost_of",
        "_deferred",
        "_id",
        "_index",
        "_kind",
        "_live",
        "_model",
        "_queue",
        "_refused",
        "_started",
        "_stop",
        "_stop_sequences",
        "_usage",
    )

    def __init__(
        self,
        fallback_id: str,
        model: str,
        stop_sequences: tuple[str, ...] = (),
        cost_of: CostOf | None = None,
    ) -> None:
        self._cost_of = cost_of
        self._id = fallback_id  # for upstreams whose chunks carry no id
        self._model = model
        self._stop_sequences = stop_sequences
        self._started = False
        self._index = -1  # the last content block index used
        self._kind: str | None = None  # the open block: "text", "thinking", "tool" or None
        self._live: _Call | None = None
        self._calls: dict[int, _Call] = {}
        self._queue: list[_Call] = []  # calls waiting for the live one to complete
        self._deferred: list[list[str]] = []  # [kind, text] that arrived during a tool block
        self._stop: tuple[str, str | None] | None = None
        self._refused = False
        self._usage: Any = None

    def chunk(self, chunk: JSON) -> bytes | None:
        out: list[bytes] = []
        if not self._started:
            self._message_start(chunk, out)
        usage = chunk.get("usage")
        if usage:
            self._usage = usage
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # Anthropic has one answer per message; n > 1 is not offered
            delta = choice.get("delta")
            if isinstance(delta, dict):
                self._delta(delta, out)
            finish = choice.get("finish_reason")
            if finish:
                self._stop = stop_reason(finish, choice, self._stop_sequences)
                self._flush(out)
        return b"".join(out) if out else None

    def done(self) -> bytes:
        out: list[bytes] = []
        if not self._started:
            self._message_start({}, out)
        self._flush(out)
        reason, sequence = self._stop or ("end_turn", None)
        if reason == "end_turn" and self._calls:
            reason = "tool_use"
        elif reason == "end_turn" and self._refused:
            reason = "refusal"
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": sequence},
            "usage": self._final_usage(),
        }
        out.append(encode_event("message_delta", delta))
        out.append(_MESSAGE_STOP)
        return b"".join(out)

    def _final_usage(self) -> JSON:
        """message_delta's usage, with the cost when the upstream reported usage."""
        shown = anthropic_usage(self._usage)
        if not isinstance(self._usage, dict) or not self._usage:
            return shown
        return with_cost(shown, self._usage, self._cost_of)

    def error(self, error: GatewayError) -> bytes:
        return error_event(error)

    def _message_start(self, chunk: JSON, out: list[bytes]) -> None:
        self._started = True
        model = chunk.get("model")
        usage = anthropic_usage(chunk.get("usage"))
        usage["output_tokens"] = 0
        message: JSON = {
            "id": message_id(chunk.get("id"), self._id),
            "type": "message",
            "role": "assistant",
            "model": model if isinstance(model, str) and model else self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        out.append(encode_event("message_start", {"type": "message_start", "message": message}))

    def _delta(self, delta: JSON, out: list[bytes]) -> None:
        thinking = reasoning_text(delta)
        if thinking:
            self._text("thinking", thinking, out)
        content = delta.get("content")
        if isinstance(content, str) and content:
            self._text("text", content, out)
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:
            self._refused = True
            self._text("text", refusal, out)
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                if isinstance(call, dict):
                    self._tool(call, out)

    def _text(self, kind: str, text: str, out: list[bytes]) -> None:
        if self._kind == "tool":
            if self._deferred and self._deferred[-1][0] == kind:
                self._deferred[-1][1] += text
            else:
                self._deferred.append([kind, text])
            return
        if self._kind != kind:
            self._close(out)
            self._open(kind, _BLOCK_STARTS[kind], out)
        self._text_delta(kind, text, out)

    def _text_delta(self, kind: str, text: str, out: list[bytes]) -> None:
        delta_type, key = _DELTA_TYPES[kind]
        payload = {
            "type": "content_block_delta",
            "index": self._index,
            "delta": {"type": delta_type, key: text},
        }
        out.append(encode_event("content_block_delta", payload))

    def _tool(self, call: JSON, out: list[bytes]) -> None:
        index = call.get("index", 0)
        if not isinstance(index, int):
            index = 0
        function = call.get("function")
        if not isinstance(function, dict):
            function = {}
        args = function.get("arguments")
        args = args if isinstance(args, str) else ""
        entry = self._calls.get(index)
        if entry is None:
            call_id = call.get("id")
            name = function.get("name")
            entry = _Call(
                call_id if isinstance(call_id, str) and call_id else f"toolu_{index}_{self._id}",
                name if isinstance(name, str) else "",
            )
            self._calls[index] = entry
            if self._kind == "tool":
                entry.args.append(args)
                self._queue.append(entry)
            else:
                self._close(out)
                self._start_call(entry, out)
                self._live_args(entry, args, out)
        elif entry.state == _LIVE:
            self._live_args(entry, args, out)
        elif entry.state == _PENDING:
            entry.args.append(args)
            return  # the live call is unchanged: nothing new to promote
        elif args.strip():
            raise ProviderError(
                502,
                "the upstream continued a tool call after its arguments were complete",
                FailureClass.TRANSIENT,
            )
        self._promote(out)

    def _live_args(self, entry: _Call, args: str, out: list[bytes]) -> None:
        if args:
            entry.args.append(args)
            self._json_delta(args, out)

    def _promote(self, out: list[bytes]) -> None:
        """Once the live call's arguments are a whole JSON document, the next call may start."""
        while self._queue and self._live is not None and _complete_json(self._live.args):
            self._close(out)
            promoted = self._queue.pop(0)
            self._start_call(promoted, out)
            buffered = "".join(promoted.args)
            promoted.args = [buffered]
            if buffered:
                self._json_delta(buffered, out)

    def _json_delta(self, partial: str, out: list[bytes]) -> None:
        payload = {
            "type": "content_block_delta",
            "index": self._index,
            "delta": {"type": "input_json_delta", "partial_json": partial},
        }
        out.append(encode_event("content_block_delta", payload))

    def _start_call(self, entry: _Call, out: list[bytes]) -> None:
        block = {"type": "tool_use", "id": entry.id, "name": entry.name, "input": {}}
        self._open("tool", block, out)
        entry.state = _LIVE
        self._live = entry

    def _open(self, kind: str, block: JSON, out: list[bytes]) -> None:
        self._index += 1
        self._kind = kind
        payload = {"type": "content_block_start", "index": self._index, "content_block": block}
        out.append(encode_event("content_block_start", payload))

    def _close(self, out: list[bytes]) -> None:
        if self._kind is None:
            return
        out.append(
            encode_event("content_block_stop", {"type": "content_block_stop", "index": self._index})
        )
        self._kind = None
        if self._live is not None:
            self._live.state = _CLOSED
            self._live = None

    def _flush(self, out: list[bytes]) -> None:
        """Close the open block, then emit everything held back, each as a whole block."""
        self._close(out)
        for entry in self._queue:
            self._start_call(entry, out)
            buffered = "".join(entry.args)
            if buffered:
                self._json_delta(buffered, out)
            self._close(out)
        self._queue.clear()
        for kind, text in self._deferred:
            self._open(kind, _BLOCK_STARTS[kind], out)
            self._text_delta(kind, text, out)
            self._close(out)
        self._deferred.clear()
