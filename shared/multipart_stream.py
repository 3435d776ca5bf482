"""A multipart/form-data body (RFC 7578) scanned as it streams past, never held whole.

Both tiers see an upload only chunk by chunk: the edge scans the first chunks to find `model`
(to route) and the core scans every verified chunk while it spools the body, so that when the
last byte is in, the parts' byte ranges, the text fields' values, each file's sha256 and its
first bytes (a WAV header, for the duration estimate) are known without reading the spool back.
Only a carry of one boundary's length and the small text fields are ever kept. The rules are
shared/multipart.py's (the whole-body parser): malformed bodies are 400s naming `file`, an
over-long text field a 400 naming it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from shared.errors import bad_request
from shared.multipart import MAX_FIELD_BYTES, MAX_PARTS, _header, _malformed

MAX_HEAD_BYTES = 16 * 1024  # one part's headers
FILE_HEAD_BYTES = 4096  # kept from each file: a WAV's fmt and data chunks lie within
_START, _DELIMITED, _HEADERS, _CONTENT, _DONE = range(5)


@dataclass(slots=True)
class ScannedPart:
    name: str
    filename: str | None
    content_type: str | None
    start: int  # the part's content lies at [start, end) in the body
    end: int = -1  # -1 while its content is still arriving
    value: bytearray = field(default_factory=bytearray)  # a text field's bytes
    head: bytearray = field(default_factory=bytearray)  # a file's first bytes
    digest: Any = None  # a file's running sha256

    @property
    def is_file(self) -> bool:
        return self.filename is not None

    @property
    def complete(self) -> bool:
        return self.end >= 0

    def text(self) -> str:
        try:
            return self.value.decode("utf-8")
        except UnicodeDecodeError:
            raise bad_request(f"the field {self.name} is not UTF-8", param=self.name[:64]) from None


class PartScanner:
    """Feed the body's bytes in order; `finish` once they are all in."""

    __slots__ = ("_base", "_buffer", "_delimiter", "_separator", "_state", "parts")

    def __init__(self, boundary: bytes) -> None:
        self._delimiter = b"--" + boundary
        self._separator = b"\r\n" + self._delimiter
        self._buffer = bytearray()
        self._base = 0  # the body offset of _buffer[0]
        self._state = _START
        self.parts: list[ScannedPart] = []

    @property
    def done(self) -> bool:
        """The closing boundary was seen (anything after it is the epilogue, ignored)."""
        return self._state == _DONE

    def feed(self, chunk: bytes) -> None:
        if self._state == _DONE:
            return
        self._buffer += chunk
        while self._step():
            pass

    def finish(self) -> list[ScannedPart]:
        if self._state != _DONE:
            raise _malformed("it does not end with its closing boundary")
        return self.parts

    def _consume(self, count: int) -> None:
        del self._buffer[:count]
        self._base += count

    def _step(self) -> bool:
        """One move of the state machine; False when it needs more bytes."""
        buffer, state = self._buffer, self._state
        if state == _START:
            if len(buffer) < len(self._delimiter):
                return False
            if not buffer.startswith(self._delimiter):
                raise _malformed("it does not start with its boundary")
            self._consume(len(self._delimiter))
            self._state = _DELIMITED
        elif state == _DELIMITED:
            if len(buffer) < 2:
                return False
            if buffer.startswith(b"--"):
                self._state = _DONE
                self._buffer = bytearray()
                return False
            if not buffer.startswith(b"\r\n"):
                raise _malformed("a boundary not followed by a line break")
            self._consume(2)
            self._state = _HEADERS
        elif state == _HEADERS:
            return self._headers()
        elif state == _CONTENT:
            return self._content()
        return state != _DONE

    def _headers(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0 or self._buffer.startswith(b"\r\n"):
            if self._buffer.startswith(b"\r\n"):
                raise _malformed("a part without headers")
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise _malformed("a part's headers are too long")
            return False
        name, filename, content_type = _header(bytes(self._buffer[:end]))
        self._consume(end + 4)
        part = ScannedPart(name, filename, content_type, self._base)
        if part.is_file:
            part.digest = hashlib.sha256()
        self.parts.append(part)
        if len(self.parts) > MAX_PARTS:
            raise _malformed(f"more than {MAX_PARTS} parts")
        self._state = _CONTENT
        return True

    def _content(self) -> bool:
        part, buffer = self.parts[-1], self._buffer
        at = buffer.find(self._separator)
        if at < 0:
            usable = len(buffer) - (len(self._separator) - 1)  # a separator may straddle
            if usable > 0:
                self._take(part, usable)
            return False
        self._take(part, at)
        part.end = self._base
        self._consume(len(self._separator))
        self._state = _DELIMITED
        return True

    def _take(self, part: ScannedPart, count: int) -> None:
        data = bytes(self._buffer[:count])
        if part.is_file:
            part.digest.update(data)
            if len(part.head) < FILE_HEAD_BYTES:
                part.head += data[: FILE_HEAD_BYTES - len(part.head)]
        else:
            part.value += data
            if len(part.value) > MAX_FIELD_BYTES:
                raise bad_request(f"the field {part.name} is too long", param=part.name[:64])
        self._consume(count)


def canonical(parts: list[ScannedPart]) -> bytes:
    """What the upload says, whatever its boundary or part order: the text fields' values and
    each file's name, type, size and sha256 (an SDK's retry of the same upload draws a new
    boundary; this stays the same, so Idempotency-Key can tell a retry from another body)."""
    entries = sorted(
        (
            (p.name, p.filename or "", p.content_type or "", p.end - p.start, p.digest.hexdigest())
            if p.is_file
            else (p.name, "", "", -1, p.value.decode("utf-8", "replace"))
        )
        for p in parts
    )
    return orjson.dumps(entries)
