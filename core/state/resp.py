"""A lean Redis client for the hot path: one multiplexed, pipelined connection.

redis-py's asyncio client costs about a quarter of the core's CPU per request (command
packing, pool checkout, retry wrappers, a pure-Python RESP3 parser). The hot path sends one
EVALSHA per request, so this client does only that well: commands are written as they come
(many in flight on one connection), replies are matched first-in first-out. A call that times
out keeps its place in the queue, so a late reply is dropped rather than handed to the next
caller. Errors are redis-py's exception types, so the Redis-down policy sees no difference.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import redis.exceptions


class ReplyError(redis.exceptions.ResponseError):
    pass


def encode(args: tuple[Any, ...]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, float):
            data = repr(arg).encode()
        else:
            data = str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def parse(buffer: bytearray | bytes, start: int) -> tuple[Any, int] | None:
    """One RESP2 reply from `start`, or None if it has not fully arrived yet."""
    end = buffer.find(b"\r\n", start)
    if end < 0:
        return None
    kind, line = buffer[start : start + 1], bytes(buffer[start + 1 : end])
    after = end + 2
    if kind == b":":
        return int(line), after
    if kind == b"$":
        length = int(line)
        if length < 0:
            return None, after
        if len(buffer) < after + length + 2:
            return None
        return bytes(buffer[after : after + length]), after + length + 2
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, after
        items = []
        position = after
        for _ in range(count):
            parsed = parse(buffer, position)
            if parsed is None:
                return None
            item, position = parsed
            items.append(item)
        return items, position
    if kind == b"+":
        return line.decode(), after
    if kind == b"-":
        return ReplyError(line.decode(errors="replace")), after
    raise redis.exceptions.ConnectionError(f"unexpected reply type {kind!r}")


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():  # keeps its place in the queue; its late reply is dropped
        waiter.set_exception(redis.exceptions.TimeoutError("redis did not answer in time"))


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiters: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.lost = self.loop.create_future()
        self.outgoing: list[bytes] = []

    def send(self, data: bytes) -> None:
        """Commands issued in the same loop iteration leave in one write."""
        if not self.outgoing:
            self.loop.call_soon(self._flush)
        self.outgoing.append(data)

    def _flush(self) -> None:
        data, self.outgoing = b"".join(self.outgoing), []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have the same API.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        position = 0
        while position < len(buffer):
            try:
                parsed = parse(buffer, position)
            except (ValueError, redis.exceptions.ConnectionError) as exc:
                self._fail(redis.exceptions.ConnectionError(f"bad reply from redis: {exc}"))
                return
            if parsed is None:
                break
            reply, position = parsed
            waiter = self.waiters.popleft()
            if not waiter.done():  # a caller that timed out: its reply is dropped
                if isinstance(reply, ReplyError):
                    waiter.set_exception(reply)
                else:
                    waiter.set_result(reply)
        del buffer[:position]

    def _fail(self, error: Exception) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(redis.exceptions.ConnectionError("redis connection lost"))
        if not self.lost.done():
            self.lost.set_result(None)


class RespClient:
    def __init__(self, url: str, timeout_s: float = 1.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "redis":
            raise ValueError("the lean client speaks plain redis:// only")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.db = int((parts.path or "/0").lstrip("/") or 0)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout_s = timeout_s
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    async def _connection(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and not protocol.lost.done():
            return protocol
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            protocol = self._protocol
            if protocol is not None and not protocol.lost.done():
                return protocol
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(self.timeout_s):
                    _, fresh = await loop.create_connection(_Protocol, self.host, self.port)
            except (OSError, TimeoutError) as exc:
                raise redis.exceptions.ConnectionError(f"cannot reach redis: {exc}") from None
            self._protocol = fresh
            if self.password is not None:
                auth = (self.username, self.password) if self.username else (self.password,)
                await self._send(fresh, ("AUTH", *auth))
            if self.db:
                await self._send(fresh, ("SELECT", self.db))
            return fresh

    async def _send(self, protocol: _Protocol, args: tuple[Any, ...]) -> Any:
        waiter: asyncio.Future[Any] = protocol.loop.create_future()
        protocol.waiters.append(waiter)
        protocol.send(encode(args))
        timer = protocol.loop.call_later(self.timeout_s, _expire, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()

    async def call(self, *args: Any) -> Any:
        return await self._send(await self._connection(), args)

    async def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
