"""Incremental decoder for the AWS event-stream framing (Bedrock ConverseStream).

Each message is: a 12-byte prelude (total length, headers length, CRC32 of those 8 bytes),
typed headers, the payload, and a CRC32 of everything before it. Upstreams split writes
anywhere, so the decoder buffers until a whole message is present and checks both CRCs before
trusting a byte of it: a corrupt length must never make us wait forever or misread the rest.
"""

from __future__ import annotations

import uuid
from struct import unpack_from
from zlib import crc32

from core.providers.adapters.base import ProviderError, StreamEvent
from shared.errors import FailureClass, invalid_upstream

PRELUDE_LENGTH = 12
CRC_LENGTH = 4
MIN_MESSAGE_LENGTH = PRELUDE_LENGTH + CRC_LENGTH
# The limits the format defines; anything larger is corruption, not a big message.
MAX_MESSAGE_LENGTH = 16 * 1024 * 1024 + 128 * 1024 + MIN_MESSAGE_LENGTH
MAX_HEADERS_LENGTH = 128 * 1024

# Header value types: fixed widths for the scalar ones, None for length-prefixed ones.
_BOOL_TRUE, _BOOL_FALSE, _BYTE, _SHORT, _INT, _LONG, _BYTES, _STRING, _TIMESTAMP, _UUID = range(10)
_FIXED_WIDTH = {_BOOL_TRUE: 0, _BOOL_FALSE: 0, _BYTE: 1, _SHORT: 2, _INT: 4, _LONG: 8}
_FIXED_WIDTH.update({_TIMESTAMP: 8, _UUID: 16})

HeaderValue = bool | int | bytes | str | uuid.UUID


def corrupt(what: str) -> ProviderError:
    return ProviderError(
        502, f"upstream sent a corrupt event stream ({what})", FailureClass.TRANSIENT
    )


def parse_headers(data: bytes | memoryview) -> dict[str, HeaderValue]:
    """All headers with typed values; timestamps stay integer epoch milliseconds."""
    headers: dict[str, HeaderValue] = {}
    view = memoryview(data)
    end = len(view)
    pos = 0
    while pos < end:
        name_length = view[pos]
        pos += 1
        if pos + name_length + 1 > end:
            raise corrupt("truncated header")
        name = bytes(view[pos : pos + name_length]).decode("utf-8", "replace")
        pos += name_length
        kind = view[pos]
        pos += 1
        value: HeaderValue
        width = _FIXED_WIDTH.get(kind)
        if width is not None:
            if pos + width > end:
                raise corrupt("truncated header value")
            if kind == _BOOL_TRUE:
                value = True
            elif kind == _BOOL_FALSE:
                value = False
            elif kind == _UUID:
                value = uuid.UUID(bytes=bytes(view[pos : pos + 16]))
            else:
                value = int.from_bytes(view[pos : pos + width], "big", signed=True)
            pos += width
        elif kind in (_BYTES, _STRING):
            if pos + 2 > end:
                raise corrupt("truncated header value")
            length = (view[pos] << 8) | view[pos + 1]
            pos += 2
            if pos + length > end:
                raise corrupt("truncated header value")
            raw = bytes(view[pos : pos + length])
            value = raw.decode("utf-8", "replace") if kind == _STRING else raw
            pos += length
        else:
            raise corrupt(f"unknown header type {kind}")
        headers[name] = value
    return headers


def _event_name(headers: dict[str, str]) -> str | None:
    message_type = headers.get(":message-type", "event")
    if message_type == "exception":
        return headers.get(":exception-type")
    if message_type == "error":
        return headers.get(":error-code")
    return headers.get(":event-type")


class EventStreamDecoder:
    """Bytes in, StreamEvents out: event = :event-type (or :exception-type / :error-code),
    headers = the string-valued headers (including :message-type), data = the payload.

    Linear in the bytes fed: the prelude announces each message's length, so a partial message
    costs one length check per read, never a re-scan. A message longer than `max_event_bytes`
    (or than the format allows) is refused from its prelude, before it is buffered."""

    __slots__ = ("_buffer", "_max_length")

    def __init__(self, max_event_bytes: int = MAX_MESSAGE_LENGTH) -> None:
        self._buffer = bytearray()
        self._max_length = min(max_event_bytes, MAX_MESSAGE_LENGTH)

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        buffer = self._buffer
        buffer += chunk
        events: list[StreamEvent] = []
        start = 0
        available = len(buffer)
        while available - start >= PRELUDE_LENGTH:
            total, headers_length, prelude_crc = unpack_from(">III", buffer, start)
            if crc32(buffer[start : start + 8]) != prelude_crc:
                raise corrupt("prelude checksum mismatch")
            if not MIN_MESSAGE_LENGTH <= total <= MAX_MESSAGE_LENGTH:
                raise corrupt("impossible message length")
            if total > self._max_length:
                raise invalid_upstream(f"a stream event larger than {self._max_length} bytes")
            if headers_length > min(MAX_HEADERS_LENGTH, total - MIN_MESSAGE_LENGTH):
                raise corrupt("impossible headers length")
            if available - start < total:
                break
            end = start + total
            message = bytes(buffer[start:end])
            (message_crc,) = unpack_from(">I", message, total - CRC_LENGTH)
            if crc32(memoryview(message)[: total - CRC_LENGTH]) != message_crc:
                raise corrupt("message checksum mismatch")
            headers_end = PRELUDE_LENGTH + headers_length
            typed = parse_headers(memoryview(message)[PRELUDE_LENGTH:headers_end])
            strings = {k: v for k, v in typed.items() if isinstance(v, str)}
            payload = message[headers_end : total - CRC_LENGTH]
            events.append(StreamEvent(_event_name(strings), payload, strings))
            start = end
        if start:
            del buffer[:start]
        return events

    def finish(self) -> list[StreamEvent]:
        """A partial message left at the end means the stream was cut mid-frame."""
        if self._buffer:
            self._buffer.clear()
            raise ProviderError(
                502, "upstream stream ended in the middle of a message", FailureClass.TRANSIENT
            )
        return []
