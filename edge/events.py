"""Whole SSE events out of the core's stream, for the edge's relay (edge/app.py `_stream`).

The edge relays whole events only, so a core that dies mid-event never leaves a client with half
an event followed by the edge's error event. Splitting is linear in the bytes relayed: a read
is searched for the event end only in its own bytes (plus the one before, since "\\n\\n" can
straddle two reads), never the whole pending buffer again; joining the pending bytes with each
read and searching it all made a long event cost O(n²). The core writes whole events, so the
usual read is passed on without a copy. An event over MAX_EVENT_BYTES means the core is broken:
the relay ends with an error event instead of buffering without bound.
"""

from __future__ import annotations

from shared.errors import Api, anthropic_error_body, openai_error_body

# Far above anything the core writes for one event: its own cap on an upstream event
# (core.resilience.max_event_bytes, 8 MiB by default) even after JSON escaping.
MAX_EVENT_BYTES = 64 * 1024 * 1024
_END = b"\n\n"


class EventTooLarge(Exception):
    """The core sent more than MAX_EVENT_BYTES without ending an event."""


def event_end(buffer: bytes | bytearray, start: int) -> int:
    """Just past the last event end at or after `start`, or -1: the splitter's one search."""
    cut = buffer.rfind(_END, start)
    return -1 if cut < 0 else cut + len(_END)


class EventSplitter:
    __slots__ = ("_pending", "max_event_bytes")

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._pending = bytearray()

    def feed(self, chunk: bytes) -> bytes:
        """The events `chunk` completes (b"" if none); the rest is held for the next read."""
        pending = self._pending
        if not pending and event_end(chunk, max(len(chunk) - len(_END), 0)) == len(chunk):
            return chunk  # whole events, the usual case: no copy
        start = max(len(pending) - 1, 0)
        pending += chunk
        end = event_end(pending, start)
        out = b""
        if end > 0:
            out = bytes(pending[:end])
            del pending[:end]
        if len(pending) > self.max_event_bytes:
            raise EventTooLarge
        return out

    def rest(self) -> bytes:
        """What is left at the end of the stream (the core ended without a final blank line)."""
        rest, self._pending = bytes(self._pending), bytearray()
        return rest


def error_event(api: Api, message: str, code: str) -> bytes:
    """A terminal error event in the client's API format."""
    if api == "anthropic":
        return b"event: error\ndata: " + anthropic_error_body(502, message, "api_error") + b"\n\n"
    return b"data: " + openai_error_body(502, message, code=code) + b"\n\n"
