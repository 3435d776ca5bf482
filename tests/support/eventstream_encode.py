"""Test-side AWS event-stream encoder, written from the format description (not from a library).

Used by the fake Bedrock server and by the decoder's property tests; botocore's own decoder
checks in the tests that these frames are what AWS would send.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from typing import Any

import orjson

# (type code, value) pairs let tests produce every header type the format defines.
BOOL_TRUE, BOOL_FALSE, BYTE, SHORT, INT, LONG, BYTES, STRING, TIMESTAMP, UUID = range(10)
_WIDTHS = {BYTE: 1, SHORT: 2, INT: 4, LONG: 8, TIMESTAMP: 8}

TypedHeaders = list[tuple[str, int, Any]]


def encode_header(name: str, kind: int, value: Any) -> bytes:
    raw_name = name.encode()
    out = bytes([len(raw_name)]) + raw_name + bytes([kind])
    if kind in (BOOL_TRUE, BOOL_FALSE):
        return out
    if kind in _WIDTHS:
        return out + int(value).to_bytes(_WIDTHS[kind], "big", signed=True)
    if kind == UUID:
        return out + (value.bytes if isinstance(value, uuid.UUID) else bytes(value))
    data = value.encode() if kind == STRING else bytes(value)
    return out + struct.pack(">H", len(data)) + data


def encode_message(headers: TypedHeaders, payload: bytes) -> bytes:
    encoded_headers = b"".join(encode_header(n, k, v) for n, k, v in headers)
    total = 12 + len(encoded_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded_headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + encoded_headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


def event_frame(event_type: str, payload: dict[str, Any]) -> bytes:
    """A ConverseStream event as Bedrock frames it (string headers, JSON payload)."""
    return encode_message(
        [
            (":event-type", STRING, event_type),
            (":content-type", STRING, "application/json"),
            (":message-type", STRING, "event"),
        ],
        orjson.dumps(payload),
    )


def exception_frame(exception_type: str, message: str) -> bytes:
    """An error that Bedrock reports inside a 200 stream."""
    return encode_message(
        [
            (":exception-type", STRING, exception_type),
            (":content-type", STRING, "application/json"),
            (":message-type", STRING, "exception"),
        ],
        orjson.dumps({"message": message}),
    )
