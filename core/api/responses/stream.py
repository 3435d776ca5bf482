"""Canonical chunks -> the Responses event stream, one state machine per stream.

The sequence OpenAI sends, which the official SDK's `responses.stream()` helper checks:
`response.created`, `response.in_progress`; per output item `response.output_item.added`,
its parts and deltas (`response.reasoning_summary_part.added` /
`response.reasoning_summary_text.delta` for a reasoning summary, `response.content_part.added`
/ `response.output_text.delta` for the message, `response.function_call_arguments.delta` for
a call), their `.done` events and `response.output_item.done`; then `response.completed` (or
`response.incomplete` with the reason). Every event carries `sequence_number`, counting from
0, and every item event its item's `id` and `output_index`.

A reasoning item is closed as soon as anything else starts (reasoning comes first); the message
and the calls stay open until the stream ends, since parallel calls can interleave. A failure
after the first byte ends the stream with an `error` event and `response.failed` (the response
so far, status failed, with the error), never a clean close.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.api.responses.response import (
    call_item,
    envelope,
    finish,
    message_item,
    new_id,
    output_text,
    reasoning_item,
)
from core.providers.adapters.base import JSON
from core.spend.quote import CostOf, with_cost
from core.wire.sse import encode_event
from shared.errors import GatewayError

# The finished response (completed or incomplete), handed over before its event is sent.
Finished = Callable[[JSON], None]


class _Item:
    """An output item being streamed: its final form is built when it closes."""

    __slots__ = ("call_id", "id", "index", "kind", "name", "text")

    def __init__(self, kind: str, index: int, item_id: str) -> None:
        self.kind = kind
        self.index = index
        self.id = item_id
        self.text: list[str] = []
        self.call_id = ""
        self.name = ""

    def final(self, status: str = "completed") -> JSON:
        text = "".join(self.text)
        if self.kind == "reasoning":
            return reasoning_item(text, self.id)
        if self.kind == "message":
            return message_item(text, self.id, status)
        return call_item(self.call_id, self.name, text, self.id, status)


class ResponsesStreamEncoder:
    """core.api.relay's StreamEncoder for the Responses API."""

    def __init__(
        self,
        request: JSON,
        response_id: str,
        model: str,
        cost_of: CostOf | None = None,
        finished: Finished | None = None,
    ) -> None:
        self._response = envelope(request, response_id, model)
        self._cost_of = cost_of
        self._finished = finished
        self._sequence = 0
        self._started = False
        self._items: list[_Item] = []
        self._open: dict[str, _Item] = {}  # "reasoning", "message", "call:<k>"
        self._finish_reason: Any = None
        self._usage: JSON | None = None

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return encode_event(kind, payload)

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        snapshot = dict(self._response)
        return self._event("response.created", response=snapshot) + self._event(
            "response.in_progress", response=snapshot
        )

    def chunk(self, chunk: JSON) -> bytes | None:
        out = [self._start()]
        usage = chunk.get("usage")
        if isinstance(usage, dict) and usage:
            self._usage = usage
        choices = chunk.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices else None
        if isinstance(choice, dict):
            delta = choice.get("delta")
            if isinstance(delta, dict):
                self._delta(delta, out)
            if choice.get("finish_reason") is not None:
                self._finish_reason = choice["finish_reason"]
        return b"".join(out) or None

    def _delta(self, delta: JSON, out: list[bytes]) -> None:
        for key in ("reasoning_content", "reasoning"):
            thinking = delta.get(key)
            if isinstance(thinking, str) and thinking:
                self._text("reasoning", thinking, out)
                break
        content = delta.get("content")
        if isinstance(content, str) and content:
            self._text("message", content, out)
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                self._call(call, out)

    def _opened(self, key: str, kind: str, prefix: str, out: list[bytes]) -> tuple[_Item, bool]:
        item = self._open.get(key)
        if item is not None:
            return item, False
        if kind != "reasoning" and "reasoning" in self._open:
            out.append(self._close(self._open.pop("reasoning")))
        item = _Item(kind, len(self._items), new_id(prefix))
        self._items.append(item)
        self._open[key] = item
        return item, True

    def _text(self, kind: str, text: str, out: list[bytes]) -> None:
        prefix = "rs_" if kind == "reasoning" else "msg_"
        item, new = self._opened(kind, kind, prefix, out)
        where = {"item_id": item.id, "output_index": item.index}
        if kind == "reasoning":
            if new:
                added = {"id": item.id, "type": "reasoning", "summary": []}
                out.append(
                    self._event("response.output_item.added", output_index=item.index, item=added)
                )
                part = {"type": "summary_text", "text": ""}
                out.append(
                    self._event(
                        "response.reasoning_summary_part.added", **where, summary_index=0, part=part
                    )
                )
            out.append(
                self._event(
                    "response.reasoning_summary_text.delta", **where, summary_index=0, delta=text
                )
            )
        else:
            if new:
                added = message_item("", item.id, "in_progress")
                added["content"] = []
                out.append(
                    self._event("response.output_item.added", output_index=item.index, item=added)
                )
                out.append(
                    self._event(
                        "response.content_part.added",
                        **where,
                        content_index=0,
                        part=output_text(""),
                    )
                )
            out.append(
                self._event(
                    "response.output_text.delta", **where, content_index=0, delta=text, logprobs=[]
                )
            )
        item.text.append(text)

    def _call(self, call: JSON, out: list[bytes]) -> None:
        index = call.get("index", 0)
        given = call.get("function")
        function: JSON = given if isinstance(given, dict) else {}
        item, new = self._opened(f"call:{index}", "call", "fc_", out)
        if new:
            call_id = call.get("id")
            item.call_id = call_id if isinstance(call_id, str) and call_id else new_id("call_")
            item.name = str(function.get("name") or "")
            added = call_item(item.call_id, item.name, "", item.id, "in_progress")
            out.append(
                self._event("response.output_item.added", output_index=item.index, item=added)
            )
        elif not item.name and function.get("name"):
            item.name = str(function["name"])
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            item.text.append(arguments)
            out.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=item.id,
                    output_index=item.index,
                    delta=arguments,
                )
            )

    def _close(self, item: _Item) -> bytes:
        """The item's .done events, then response.output_item.done."""
        text = "".join(item.text)
        where = {"item_id": item.id, "output_index": item.index}
        if item.kind == "reasoning":
            part = {"type": "summary_text", "text": text}
            done = self._event(
                "response.reasoning_summary_text.done", **where, summary_index=0, text=text
            )
            done += self._event(
                "response.reasoning_summary_part.done", **where, summary_index=0, part=part
            )
        elif item.kind == "message":
            done = self._event(
                "response.output_text.done", **where, content_index=0, text=text, logprobs=[]
            )
            done += self._event(
                "response.content_part.done", **where, content_index=0, part=output_text(text)
            )
        else:
            done = self._event(
                "response.function_call_arguments.done", **where, name=item.name, arguments=text
            )
        return done + self._event(
            "response.output_item.done", output_index=item.index, item=item.final()
        )

    def _close_all(self) -> bytes:
        closing = sorted(self._open.values(), key=lambda item: item.index)
        self._open.clear()
        return b"".join(self._close(item) for item in closing)

    def done(self) -> bytes:
        out = self._start() + self._close_all()
        response = self._response
        response["output"] = [item.final() for item in self._items]
        finish(response, self._finish_reason, self._usage)
        if self._finished is not None:
            self._finished(response)
        if response["usage"] is not None and self._usage is not None:
            shown = {**response, "usage": with_cost(response["usage"], self._usage, self._cost_of)}
        else:
            shown = response
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        return out + self._event(kind, response=shown)

    def error(self, error: GatewayError) -> bytes:
        out = self._start()
        code = error.code or error.type or "server_error"
        out += self._event("error", code=code, message=error.message, param=error.param)
        response = self._response
        response["output"] = [item.final("incomplete") for item in self._items]
        response["status"] = "failed"
        response["error"] = {"code": code, "message": error.message}
        return out + self._event("response.failed", response=response)
