"""Anthropic SSE events -> canonical chat-completion chunks, one explicit state machine.

Traps handled here: content_block indexes count text and thinking blocks too, so tool calls get
their own dense index; usage arrives in message_start and again, cumulative, in message_delta;
an `error` event can follow a 200; there is no [DONE], so only message_stop ends a stream well.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from core.providers.adapters.anthropic.errors import stream_error
from core.providers.adapters.anthropic.response import (
    canonical_usage,
    finish_reason,
    text_of,
)
from core.providers.adapters.base import JSON, StreamEvent, Target
from shared.errors import invalid_upstream, stream_incomplete, upstream_object


@dataclass(slots=True)
class _Block:
    kind: str
    tool_index: int = -1
    sent_arguments: bool = False
    start_input: Any = None
    thinking: list[str] = field(default_factory=list)
    signature: str = ""


class AnthropicStreamParser:
    __slots__ = (
        "_blocks",
        "_created",
        "_done",
        "_finished",
        "_id",
        "_model",
        "_next_tool",
        "_started",
        "_usage",
    )

    def __init__(self, target: Target) -> None:
        self._id = "msg_unknown"
        self._model = target.model
        self._created = int(time.time())
        self._started = False
        self._finished = False
        self._done = False
        self._blocks: dict[int, _Block] = {}
        self._next_tool = 0
        self._usage: JSON = {}

    def _chunk(self, delta: JSON, finish: str | None = None) -> JSON:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    def _start(self, out: list[JSON]) -> None:
        if not self._started:
            self._started = True
            out.append(self._chunk({"role": "assistant", "content": ""}))

    def feed(self, event: StreamEvent) -> list[JSON]:
        if self._done or not event.data:
            return []
        payload = upstream_object(event.data, "a malformed stream event")
        kind = payload.get("type") or event.event
        out: list[JSON] = []
        if kind == "content_block_delta":
            self._delta(payload, out)
        elif kind == "message_start":
            self._message_start(payload, out)
        elif kind == "content_block_start":
            self._block_start(payload, out)
        elif kind == "content_block_stop":
            self._block_stop(payload, out)
        elif kind == "message_delta":
            self._message_delta(payload, out)
        elif kind == "message_stop":
            self._start(out)
            if not self._finished:
                self._finished = True
                out.append(self._chunk({}, "stop"))
            self._done = True
            usage = canonical_usage(self._usage)
            out.append({**self._chunk({}), "choices": [], "usage": usage})
        elif kind == "error":
            raise stream_error(payload)
        # ping and event types added later carry nothing for a chat completion.
        return out

    def finish(self) -> list[JSON]:
        if not self._done:
            raise stream_incomplete()
        return []

    def _message_start(self, payload: JSON, out: list[JSON]) -> None:
        message = payload.get("message")
        if isinstance(message, dict):
            if isinstance(message.get("id"), str):
                self._id = message["id"]
            if isinstance(message.get("model"), str):
                self._model = message["model"]
            if isinstance(message.get("usage"), dict):
                self._usage.update(message["usage"])
        self._start(out)

    def _block_start(self, payload: JSON, out: list[JSON]) -> None:
        self._start(out)
        block = payload.get("content_block")
        index = payload.get("index")
        if not isinstance(block, dict) or not isinstance(index, int):
            raise invalid_upstream("a malformed content_block_start event")
        kind = block.get("type")
        state = _Block(kind if isinstance(kind, str) else "unknown")
        self._blocks[index] = state
        if kind == "tool_use":
            state.tool_index = self._next_tool
            self._next_tool += 1
            state.start_input = block.get("input")
            call = {
                "index": state.tool_index,
                "id": text_of(block, "id"),
                "type": "function",
                "function": {"name": text_of(block, "name"), "arguments": ""},
            }
            out.append(self._chunk({"tool_calls": [call]}))
        elif kind == "text" and (text := text_of(block, "text")):
            out.append(self._chunk({"content": text}))
        elif kind == "thinking" and (thinking := text_of(block, "thinking")):
            state.thinking.append(thinking)
            out.append(self._chunk({"reasoning_content": thinking}))
        elif kind == "redacted_thinking":
            redacted = {"type": "redacted_thinking", "data": text_of(block, "data")}
            out.append(self._chunk({"thinking_blocks": [redacted]}))

    def _block(self, payload: JSON) -> _Block | None:
        index = payload.get("index")
        return self._blocks.get(index) if isinstance(index, int) else None

    def _delta(self, payload: JSON, out: list[JSON]) -> None:
        delta = payload.get("delta")
        state = self._block(payload)
        if not isinstance(delta, dict) or state is None:
            raise invalid_upstream("a content_block_delta for an unknown block")
        kind = delta.get("type")
        if kind == "text_delta":
            text = text_of(delta, "text")
            if text:
                out.append(self._chunk({"content": text}))
        elif kind == "input_json_delta":
            fragment = text_of(delta, "partial_json")
            if fragment and state.kind == "tool_use":
                state.sent_arguments = True
                call = {"index": state.tool_index, "function": {"arguments": fragment}}
                out.append(self._chunk({"tool_calls": [call]}))
        elif kind == "thinking_delta":
            thinking = text_of(delta, "thinking")
            if thinking:
                state.thinking.append(thinking)
                out.append(self._chunk({"reasoning_content": thinking}))
        elif kind == "signature_delta":
            state.signature += text_of(delta, "signature")
        # citations_delta and future delta types have no chat-completions form.

    def _block_stop(self, payload: JSON, out: list[JSON]) -> None:
        state = self._block(payload)
        if state is None:
            return
        if state.kind == "tool_use" and not state.sent_arguments:
            # No input_json_delta (a tool without parameters): the arguments must still parse.
            arguments = orjson.dumps(state.start_input or {}).decode()
            call = {"index": state.tool_index, "function": {"arguments": arguments}}
            out.append(self._chunk({"tool_calls": [call]}))
        elif state.kind == "thinking" and state.signature:
            # The whole block, signature included, so a client can send it back with tool results.
            block = {
                "type": "thinking",
                "thinking": "".join(state.thinking),
                "signature": state.signature,
            }
            out.append(self._chunk({"thinking_blocks": [block]}))

    def _message_delta(self, payload: JSON, out: list[JSON]) -> None:
        usage = payload.get("usage")
        if isinstance(usage, dict):
            # Cumulative counts: later values replace earlier ones, missing ones are kept.
            self._usage.update({k: v for k, v in usage.items() if v is not None})
        delta = payload.get("delta")
        stop_reason = delta.get("stop_reason") if isinstance(delta, dict) else None
        if stop_reason is not None and not self._finished:
            self._start(out)
            self._finished = True
            out.append(self._chunk({}, finish_reason(stop_reason)))
