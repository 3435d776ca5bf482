"""One HTTP/1.1 connection as an asyncio.Protocol: bytes in, response heads and body chunks
out, one exchange at a time.

Reading is pull-based and bounded: body bytes wait in a queue until the owner reads them, and
above `HIGH_WATER` bytes the socket is paused (resumed below `LOW_WATER`), so a slow reader
never makes the connection buffer without bound. Every wait for bytes has the exchange's read
timeout (the silence between two reads); the timer is armed once per wait and re-armed lazily,
never per chunk. The connection remembers a loss or an EOF seen while it sat idle in a pool
(`usable`), so a connection the peer closed is never handed out to send a request on.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import cast

from shared.h1.errors import Disconnected, H1Error, H1Timeout, ProtocolError
from shared.h1.parse import BodyFramer, Head, framer_for, parse_head

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class Connection(asyncio.Protocol):
    """The socket's side of an exchange; shared/h1/client.py drives it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.error: H1Error | None = None  # set once: the connection is finished
        self.idle_since = 0.0
        self.read_timeout: float | None = None
        self._active = False  # an exchange is running (bytes are expected)
        self._method = "GET"
        self._buffer = bytearray()  # bytes of a head not parsed yet
        self._framer: BodyFramer | None = None  # set once the final head is in
        self._keep_alive = False
        self._chunks: deque[bytes] = deque()
        self._queued = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._wait_started = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._drain: asyncio.Future[None] | None = None
        self._lost = False  # connection_lost was seen

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        framer = self._framer
        if not self._active:
            self._fail(ProtocolError("bytes received outside an exchange"))
        elif framer is None:
            self._buffer += data
            self._wake()
        else:
            for piece in framer.feed(data):
                self._chunks.append(piece)
                self._queued += len(piece)
            if self._queued > HIGH_WATER and not self._paused and self.transport is not None:
                self._paused = True
                self.transport.pause_reading()
            self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        framer = self._framer
        if framer is not None and framer.close_ends and not framer.done:
            framer.done = True  # a body read until close has ended
            self._keep_alive = False
        self._lost = True
        if self.error is None:
            self.error = Disconnected(responded=framer is not None)
        self._wake()
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    def pause_writing(self) -> None:
        if self._drain is None:
            self._drain = self.loop.create_future()

    def resume_writing(self) -> None:
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    # the client's side

    @property
    def usable(self) -> bool:
        """Nothing ended it: no loss, no EOF, no stray bytes, the transport still open."""
        transport = self.transport
        return self.error is None and transport is not None and not transport.is_closing()

    @property
    def reusable(self) -> bool:
        """The exchange ended cleanly and the peer keeps the connection open."""
        framer = self._framer
        done = framer is not None and framer.done and not framer.extra and not self._chunks
        return done and self._keep_alive and self.usable

    def begin(self, method: str, read_timeout: float | None) -> None:
        self._active, self._method, self.read_timeout = True, method, read_timeout
        self._framer, self._keep_alive = None, False
        self._buffer.clear()

    def end(self) -> None:
        """The exchange is over and the connection goes back to a pool."""
        self._active, self._framer = False, None

    def write(self, data: bytes) -> None:
        if self.error is not None:
            raise self.error
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        """Waits while the socket's write buffer is full; raises once the connection ended."""
        if self._drain is not None:
            await self._drain
        if self.error is not None:
            raise self.error

    def close(self, error: H1Error | None = None) -> None:
        self._fail(error or Disconnected(responded=self._framer is not None))

    async def read_head(self, interim: bool) -> Head:
        """The next response head: a `100 Continue` only when `interim` (the request is
        waiting for it), other 1xx skipped; the final head sets up the body's framing."""
        while True:
            head = parse_head(self._buffer)
            if head is None:
                await self._wait()
                continue
            if head.status == 100 and interim:
                return head
            if head.status < 200:
                if head.status == 101:
                    raise ProtocolError("unexpected protocol switch")
                continue
            framer = framer_for(head, self._method)
            self._framer, self._keep_alive = framer, head.keep_alive and not framer.close_ends
            rest, self._buffer = bytes(self._buffer), bytearray()
            if rest:
                self.data_received(rest)
            if self._lost and framer.close_ends:
                framer.done = True  # the whole body arrived before the close was seen
            return head

    async def read_chunk(self) -> bytes:
        """The body bytes that arrived since the last read (at least one), b"" at the end."""
        while not self._chunks:
            framer = self._framer
            assert framer is not None
            if framer.done:
                return b""
            await self._wait()
        if len(self._chunks) == 1:
            data = self._chunks.popleft()
        else:
            data = b"".join(self._chunks)
            self._chunks.clear()
        self._queued = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    @property
    def body_done(self) -> bool:
        framer = self._framer
        return framer is not None and framer.done and not self._chunks

    async def _wait(self) -> None:
        """Until more bytes arrive, the connection ends, or the read timeout runs out."""
        if self.error is not None:
            raise self.error
        waiter = self._waiter = self.loop.create_future()
        timeout = self.read_timeout
        if timeout is not None:
            self._wait_started = now = self.loop.time()
            timer = self._timer
            if timer is not None and timer.when() > now + timeout:  # a longer one, earlier
                timer.cancel()
                timer = None
            if timer is None:
                self._timer = self.loop.call_at(now + timeout, self._expire)
        try:
            await waiter
        finally:
            self._waiter = None

    def _expire(self) -> None:
        self._timer = None
        waiter, timeout = self._waiter, self.read_timeout
        if waiter is None or waiter.done() or timeout is None:
            return
        deadline = self._wait_started + timeout
        if self.loop.time() >= deadline:
            self._fail(H1Timeout("read"))
        else:
            self._timer = self.loop.call_at(deadline, self._expire)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: H1Error) -> None:
        if self.error is None:
            self.error = error
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            self.transport.close()
        self._wake()
