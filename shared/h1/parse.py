"""Pure HTTP/1.1 response parsing: the head (status line and headers) and the body's framing
(Content-Length, chunked, or until the connection closes). No I/O: the connection feeds bytes
in (shared/h1/connection.py), and the tests can feed any split of them."""

from __future__ import annotations

from dataclasses import dataclass

from shared.h1.errors import ProtocolError

MAX_HEAD_BYTES = 64 * 1024  # a response head (status line + headers) longer than this is refused
_MAX_CHUNK_LINE = 4096  # a chunk-size line (with extensions) or a trailer line
_NO_BODY_STATUSES = frozenset({204, 304})


@dataclass(frozen=True, slots=True)
class Head:
    """A response head: `headers` lower-cased, repeated fields joined with ", "."""

    status: int
    reason: str
    headers: dict[str, str]
    keep_alive: bool  # HTTP/1.1 without `Connection: close`


def parse_head(buffer: bytearray) -> Head | None:
    """The head at the start of `buffer`, removed from it; None while it is incomplete."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_HEAD_BYTES:
            raise ProtocolError("response head too large")
        return None
    if end > MAX_HEAD_BYTES:
        raise ProtocolError("response head too large")
    lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    del buffer[: end + 4]
    version, status, reason = _status_line(lines[0])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or line[0] in " \t":
            raise ProtocolError("malformed response header")  # obs-fold included
        name, value = name.lower(), value.strip(" \t")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    tokens = headers.get("connection", "").lower()
    keep_alive = version == "HTTP/1.1" and "close" not in tokens
    return Head(status, reason, headers, keep_alive)


def _status_line(line: str) -> tuple[str, int, str]:
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if (
        version not in ("HTTP/1.1", "HTTP/1.0")
        or len(code) != 3
        or not (code.isascii() and code.isdigit())
    ):
        raise ProtocolError("malformed status line")
    return version, int(code), reason


class BodyFramer:
    """One response body's framing: `feed` returns the body bytes in what it is given and
    sets `done` at the body's end; bytes past the end are kept in `extra` (a peer that sends
    them is not reused). `length` None with `chunked` False reads until the connection closes
    (`close_ends` True); `length` 0 is no body at all."""

    __slots__ = ("_buffer", "_left", "_state", "chunked", "close_ends", "done", "extra", "length")

    def __init__(self, length: int | None, chunked: bool) -> None:
        self.length = length
        self.chunked = chunked
        self.close_ends = length is None and not chunked
        self._left = length or 0
        self.done = length == 0 and not chunked
        self.extra = b""
        self._buffer = bytearray()
        self._state = "size"  # chunked: size -> data -> crlf -> size ... -> trailer

    def feed(self, data: bytes) -> list[bytes]:
        if self.done:
            self.extra += data
            return []
        if self.chunked:
            return self._feed_chunked(data)
        if self.close_ends:
            return [data] if data else []
        if len(data) < self._left:
            self._left -= len(data)
            return [data]
        body, self.extra = data[: self._left], data[self._left :]
        self._left, self.done = 0, True
        return [body] if body else []

    def _feed_chunked(self, data: bytes) -> list[bytes]:
        self._buffer += data
        out: list[bytes] = []
        while not self.done:
            if self._state == "data":
                if not self._buffer:
                    break
                piece = bytes(self._buffer[: self._left])
                del self._buffer[: self._left]
                self._left -= len(piece)
                out.append(piece)
                if self._left == 0:
                    self._state = "crlf"
                continue
            line = self._line()
            if line is None:
                break
            self._step(line)
        if self.done:
            self.extra, self._buffer = bytes(self._buffer), bytearray()
        return out

    def _line(self) -> bytes | None:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > _MAX_CHUNK_LINE:
                raise ProtocolError("chunk framing line too long")
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    def _step(self, line: bytes) -> None:
        """One framing line: a chunk size, the CRLF after a chunk's data, or a trailer."""
        if self._state == "crlf":
            if line:
                raise ProtocolError("chunk data longer than its size")
            self._state = "size"
        elif self._state == "trailer":
            self.done = not line  # trailers are read and dropped; an empty line ends them
        else:
            size = line.split(b";", 1)[0].strip()
            if not size or len(size) > 16 or size.strip(b"0123456789abcdefABCDEF"):
                raise ProtocolError("malformed chunk size")
            self._left = int(size, 16)
            self._state = "data" if self._left else "trailer"


def framer_for(head: Head, method: str) -> BodyFramer:
    """How this response's body is framed: none for HEAD, 204 and 304 (1xx never get here);
    chunked when Transfer-Encoding ends in chunked; Content-Length; else until close."""
    if method == "HEAD" or head.status in _NO_BODY_STATUSES:
        return BodyFramer(0, chunked=False)
    coding = head.headers.get("transfer-encoding")
    if coding is not None:
        last = coding.rsplit(",", 1)[-1].strip().lower()
        return BodyFramer(None, chunked=last == "chunked")
    length = head.headers.get("content-length")
    if length is None:
        return BodyFramer(None, chunked=False)
    values = {value.strip() for value in length.split(",")}  # repeated equal values are one
    value = values.pop()
    if values or not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise ProtocolError("malformed content-length")
    return BodyFramer(int(value), chunked=False)
