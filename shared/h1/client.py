"""A lean HTTP/1.1 client: one request, one response, over a pooled connection.

What it does and no more (the edge -> core hop, a core -> provider call): the request target
goes out verbatim (a signed URL stays byte for byte as signed), a body is bytes (with its
Content-Length), an async iterator of bytes (sent chunked) or a `Sized` one (sent as is, with
its Content-Length: a spooled upload whose size is known), and `Expect: 100-continue` holds
the body back until the peer's `100 Continue`, reported to `on_continue` the moment it arrives
(a peer that answers before it never gets the body, and its connection is not reused). The
response is read whole under a cap, or chunk by chunk as it arrives. No redirects, no
cookies, no decompression, no proxies: a caller that needs them is not on a hot path.

A connection goes back to its pool only once its response was read to its end (and its
request body wholly sent); a cancel, an error or a timeout closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Self

from shared.h1.connection import Connection
from shared.h1.errors import BodyFailed, BodyTooLarge, H1Error
from shared.h1.parse import Head
from shared.h1.pool import Origin, Pool, split_url


class Sized:
    """An async-iterator body of a known length: sent as is under its Content-Length, not
    chunked. A source that gives another number of bytes fails the exchange (BodyFailed)."""

    __slots__ = ("length", "source")

    def __init__(self, source: AsyncIterator[bytes], length: int) -> None:
        if length < 0:
            raise ValueError("a negative body length")
        self.source, self.length = source, length


Body = bytes | AsyncIterator[bytes] | Sized | None
_OWN_HEADERS = frozenset({"content-length", "transfer-encoding", "expect", "connection"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_JOINED_BYTES = 64 * 1024  # a bytes body up to this size is sent in one write with its head


class Response:
    """A response whose head is in. End it with `release` (pooled again if read to its end,
    closed otherwise) or `close`; reading it to its end releases it."""

    __slots__ = (
        "_conn",
        "_ended",
        "_origin",
        "_pool",
        "_reuse",
        "_slot",
        "_writer",
        "head",
        "headers",
        "status",
    )

    def __init__(
        self,
        head: Head,
        conn: Connection,
        pool: Pool,
        origin: Origin,
        writer: asyncio.Task[None] | None,
        reuse: bool,
        slot: asyncio.Semaphore | None,
    ) -> None:
        self.head = head
        self.status = head.status
        self.headers = head.headers
        self._conn, self._pool, self._origin = conn, pool, origin
        self._writer = writer
        self._reuse = reuse
        self._slot = slot  # the client's `max_active` slot this exchange holds until it ends
        self._ended = False

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length")
        return int(value) if value is not None and value.isascii() and value.isdigit() else None

    async def next_chunk(self) -> bytes:
        """The bytes that arrived since the last call (waiting for some), b"" at the end.
        Raises an H1Error (the response is then closed)."""
        if self._ended:
            return b""
        try:
            data = await self._conn.read_chunk()
        except BaseException:
            self.close()
            raise
        if not data:
            self.release()
        return data

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        data = await self.next_chunk()
        if not data:
            raise StopAsyncIteration
        return data

    async def read(self, cap: int | None = None) -> bytes:
        """The whole body, at most `cap` bytes (a larger Content-Length is refused before a
        byte is read): BodyTooLarge past it, and the connection closed."""
        length = self.content_length
        if cap is not None and length is not None and length > cap:
            self.close()
            raise BodyTooLarge(f"the body's {length} bytes exceed {cap}")
        chunks: list[bytes] = []
        size = 0
        while data := await self.next_chunk():
            size += len(data)
            if cap is not None and size > cap:
                self.close()
                raise BodyTooLarge(f"the body exceeds {cap} bytes")
            chunks.append(data)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def release(self) -> None:
        if self._ended:
            return
        writer = self._writer
        sent = writer is None or (writer.done() and not writer.cancelled())
        if self._reuse and sent and self._conn.reusable:
            self._pool.put(self._origin, self._conn)
        else:
            self._end(self._conn, writer)
        self._finish()

    def close(self) -> None:
        if not self._ended:
            self._end(self._conn, self._writer)
            self._finish()

    def _finish(self) -> None:
        self._ended = True
        if self._slot is not None:
            self._slot.release()

    def __del__(self) -> None:
        """A response dropped unended (a bug, or a cancel between the request and its owner's
        `finally`) must not keep its slot, or its connection, for ever."""
        if not self._ended:
            with contextlib.suppress(Exception):  # at exit, the loop may be closed already
                self._end(self._conn, self._writer)
            self._finish()

    @staticmethod
    def _end(conn: Connection, writer: asyncio.Task[None] | None) -> None:
        conn.close()
        if writer is not None and not writer.done():
            writer.cancel()


class Client:
    """Requests over a keep-alive pool (shared/h1/pool.py); one per process and purpose.
    `max_active` bounds the exchanges in flight at once (a request waits for a slot; a
    response holds its slot until it is released or closed), so open connections stay within
    it plus the idle ones; None is no bound (the edge: its load is bounded by its server)."""

    def __init__(
        self,
        tls: ssl.SSLContext | None = None,
        idle_s: float = 15.0,
        max_idle: int = 100,
        max_active: int | None = None,
    ) -> None:
        self.pool = Pool(tls, idle_s, max_idle)
        self._slots = asyncio.Semaphore(max_active) if max_active else None

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: Body = None,
        *,
        expect_continue: bool = False,
        eager: bool = False,
        on_continue: Callable[[], None] | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        fresh: bool = False,
    ) -> Response:
        """The response's head, once it is in. `read_timeout` bounds every silence (waiting
        for the head, then between body chunks); `fresh` makes a new connection, closed after
        this exchange. `expect_continue` applies to a request with a body; `eager` sends that
        body at once all the same, so the peer's `100 Continue` (still asked for, and reported
        to `on_continue`) is an acknowledgement, not a gate. Raises an H1Error;
        any failure, and a cancel, closes the connection."""
        origin, target = split_url(url)
        expect = expect_continue and (bool(body) if isinstance(body, bytes) else body is not None)
        request_head = _request_head(method, target, origin, headers, body, expect)
        slot = self._slots
        if slot is not None:
            await slot.acquire()
        try:
            conn = await self.pool.acquire(origin, connect_timeout, fresh)
            conn.begin(method, read_timeout)
            exchange = _Exchange(conn, body, expect, eager)
            try:
                head = await exchange.run(request_head, on_continue)
            except BaseException:
                Response._end(conn, exchange.writer)
                raise
        except BaseException:
            if slot is not None:
                slot.release()
            raise
        reuse = not fresh and exchange.body_went
        return Response(head, conn, self.pool, origin, exchange.writer, reuse, slot)

    def close(self) -> None:
        self.pool.close()


class _Exchange:
    """Sends one request's head and body and reads the response's head."""

    __slots__ = ("body", "body_went", "conn", "expect", "writer")

    def __init__(self, conn: Connection, body: Body, expect: bool, eager: bool) -> None:
        self.conn, self.body, self.expect = conn, body, expect
        self.writer: asyncio.Task[None] | None = None
        # With Expect, the body goes after the peer's `100 Continue`, unless sent eagerly.
        self.body_went = not expect or eager

    async def run(self, request_head: bytes, on_continue: Callable[[], None] | None) -> Head:
        conn = self.conn
        if self.body_went:
            self._send_body(request_head)
        else:
            conn.write(request_head)
        head = await conn.read_head(interim=self.expect)
        if head.status == 100:
            if on_continue is not None:
                on_continue()
            if not self.body_went:
                self.body_went = True
                self._send_body(b"")
            head = await conn.read_head(interim=False)
        return head

    def _send_body(self, prefix: bytes) -> None:
        body = self.body
        if body is None or isinstance(body, bytes):
            if body and len(body) <= _JOINED_BYTES:
                self.conn.write(prefix + body)
            elif body:
                if prefix:
                    self.conn.write(prefix)
                self.conn.write(body)
            else:
                self.conn.write(prefix)
            return
        if prefix:
            self.conn.write(prefix)
        self.writer = asyncio.get_running_loop().create_task(_send_stream(self.conn, body))


async def _send_stream(conn: Connection, body: AsyncIterator[bytes] | Sized) -> None:
    """The body in chunked framing (as is when it is Sized), paced by the socket. A source
    that raises, or a Sized one of another length, ends the connection with BodyFailed (the
    peer sees a body cut short)."""
    sized = body if isinstance(body, Sized) else None
    source = body.source if isinstance(body, Sized) else body
    sent = 0
    try:
        async for chunk in source:
            if chunk:
                sent += len(chunk)
                conn.write(chunk if sized is not None else b"%x\r\n%b\r\n" % (len(chunk), chunk))
                await conn.drain()
        if sized is None:
            conn.write(b"0\r\n\r\n")
        elif sent != sized.length:
            raise ValueError(f"the body source gave {sent} bytes, not {sized.length}")
    except H1Error:
        return  # the connection ended: whoever reads the response hears why
    except Exception as exc:
        failure = BodyFailed("the request body's source failed")
        failure.__cause__ = exc
        conn.close(failure)


def _request_head(
    method: str,
    target: str,
    origin: Origin,
    headers: Mapping[str, str],
    body: Body,
    expect: bool,
) -> bytes:
    """The request line and headers. Framing headers are this module's (a caller's
    Content-Length, Transfer-Encoding, Expect or Connection is ignored); a `host` given by the
    caller (a signed one) replaces the origin's. CR, LF or NUL in any of it is a ValueError."""
    lines = [f"{method} {target} HTTP/1.1", f"host: {origin.host_header}"]
    for name, value in headers.items():
        lower = name.lower()
        if lower == "host":
            lines[1] = f"{name}: {value}"
        elif lower not in _OWN_HEADERS:
            lines.append(f"{name}: {value}")
    if isinstance(body, bytes):
        lines.append(f"content-length: {len(body)}")
    elif isinstance(body, Sized):
        lines.append(f"content-length: {body.length}")
    elif body is not None:
        lines.append("transfer-encoding: chunked")
    elif method in _BODY_METHODS:
        lines.append("content-length: 0")
    if expect:
        lines.append("expect: 100-continue")
    text = "\n".join(lines)
    if "\r" in text or "\0" in text or text.count("\n") != len(lines) - 1 or " " in target:
        raise ValueError("a request line or header holds CR, LF, NUL (or the target a space)")
    return (text.replace("\n", "\r\n") + "\r\n\r\n").encode("latin-1")
