"""Incremental server-sent-events decoding and encoding.

Upstreams split writes anywhere (mid-line, mid-event, between \\r and \\n); the decoder keeps
explicit state so any byte split gives the same events.

Cost is linear in the bytes fed, however they are split: the pending bytes live in one
bytearray (appending is amortised O(1), dropping consumed lines from the front is O(1)), and
each byte is scanned for a line end once, since the scan resumes where the previous one
stopped. Re-joining and re-scanning the pending line on every read instead costs O(n²) for an
n-byte line (50 MB took 25 s of CPU, stalling every tenant on the loop). One event may hold
at most `max_event_bytes`: a stream that exceeds it is an invalid upstream response, never a
buffer that grows without bound.
"""

from __future__ import annotations

from typing import Any

import orjson

from core.providers.adapters.base import StreamEvent
from shared.errors import invalid_upstream

DONE = b"data: [DONE]\n\n"
DEFAULT_MAX_EVENT_BYTES = 8 * 1024 * 1024
_CR, _LF = 0x0D, 0x0A


def line_end(buffer: bytearray, start: int) -> tuple[int, int] | None:
    """(end of the line, start of the next) for the first line end at or after `start`, or
    None when there is none yet. A lone \\r at the very end may be the first half of \\r\\n, so
    it counts as not found. The decoder's one scanning primitive: it looks at each byte once."""
    newline = buffer.find(b"\n", start)
    carriage = buffer.find(b"\r", start, len(buffer) if newline == -1 else newline)
    if carriage == -1:
        return None if newline == -1 else (newline, newline + 1)
    if carriage == len(buffer) - 1:
        return None
    return carriage, carriage + 2 if buffer[carriage + 1] == _LF else carriage + 1


class SSEDecoder:
    __slots__ = ("_buffer", "_data", "_event", "_event_bytes", "_scanned", "max_event_bytes")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._buffer = bytearray()
        self._scanned = 0  # the pending line has no line end before this offset
        self._event: str | None = None
        self._data: list[bytes | bytearray] = []
        self._event_bytes = 0  # data bytes gathered for the current event

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        buffer = self._buffer
        buffer += chunk
        events: list[StreamEvent] = []
        start = 0
        while (found := line_end(buffer, max(start, self._scanned))) is not None:
            end, next_start = found
            self._line(buffer[start:end], events)
            start = next_start
            self._scanned = 0
        if start:
            del buffer[:start]
        # Resume at the last byte: a trailing \r is decided by the byte after it.
        self._scanned = max(len(buffer) - 1, 0)
        self._check_size(len(buffer))
        return events

    def finish(self) -> list[StreamEvent]:
        """Flush a final event that lacked its blank line (some servers close without one)."""
        events: list[StreamEvent] = []
        if self._buffer:
            self._line(self._buffer, events)
            self._buffer = bytearray()
            self._scanned = 0
        self._line(b"", events)
        return events

    def _check_size(self, pending: int) -> None:
        if self._event_bytes + pending > self.max_event_bytes:
            raise invalid_upstream(f"a stream event larger than {self.max_event_bytes} bytes")

    def _line(self, line: bytes | bytearray, events: list[StreamEvent]) -> None:
        if not line:
            if self._data or self._event is not None:
                events.append(StreamEvent(self._event, b"\n".join(self._data)))
            self._event = None
            self._data = []
            self._event_bytes = 0
            return
        if line[0] == 0x3A:  # ":" comment, e.g. keep-alive pings
            return
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._event_bytes += len(value) + 1
            self._check_size(0)
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")


def encode_data(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def encode_event(event: str, payload: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
