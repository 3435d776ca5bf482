"""Incremental server-sent-events decoding and encoding.

Upstreams split writes anywhere (mid-line, mid-event, between \\r and \\n); the decoder keeps
explicit state so any byte split gives the same events.
"""

from __future__ import annotations

from typing import Any

import orjson

from core.providers.adapters.base import StreamEvent

DONE = b"data: [DONE]\n\n"


class SSEDecoder:
    __slots__ = ("_buffer", "_data", "_event")

    def __init__(self) -> None:
        self._buffer = b""
        self._event: str | None = None
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        buffer = self._buffer + chunk
        events: list[StreamEvent] = []
        start = 0
        length = len(buffer)
        while start < length:
            newline = buffer.find(b"\n", start)
            carriage = buffer.find(b"\r", start, newline if newline != -1 else length)
            if carriage != -1:
                # A lone \r at the very end may be the first half of \r\n: wait for more.
                if carriage == length - 1:
                    break
                end = carriage
                next_start = (
                    carriage + 2 if buffer[carriage + 1 : carriage + 2] == b"\n" else carriage + 1
                )
            elif newline != -1:
                end = newline
                next_start = newline + 1
            else:
                break
            self._line(buffer[start:end], events)
            start = next_start
        self._buffer = buffer[start:]
        return events

    def finish(self) -> list[StreamEvent]:
        """Flush a final event that lacked its blank line (some servers close without one)."""
        events: list[StreamEvent] = []
        if self._buffer:
            self._line(self._buffer, events)
            self._buffer = b""
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[StreamEvent]) -> None:
        if not line:
            if self._data or self._event is not None:
                events.append(StreamEvent(self._event, b"\n".join(self._data)))
            self._event = None
            self._data = []
            return
        if line[0] == 0x3A:  # ":" comment, e.g. keep-alive pings
            return
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")


def encode_data(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def encode_event(event: str, payload: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
