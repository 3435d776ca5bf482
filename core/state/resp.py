"""A lean Redis client for the core: one multiplexed, pipelined connection.

redis-py's asyncio client costs 3-6x more CPU per call (command packing, pool checkout,
retry wrappers, a pure-Python parser; `python -m tests.bench.resp_ab` measures both). The core
sends one EVALSHA per request, so this client does that well: commands are written as they
come (many in flight on one connection), replies are matched first-in first-out.

Its failures are redis-py's, by construction: the URL is read by redis-py's parser (redis://,
rediss:// with redis-py's TLS context, unix://), error replies are classified by redis-py's
table (core/state/errors.py), and the connection is dropped whenever redis-py would drop its
own: on a failed handshake (AUTH, SELECT), on a connection-level error reply (NOAUTH, LOADING,
READONLY...) and on a timeout. A dropped connection fails every call still waiting on it with
ConnectionError and the next call reconnects, so nothing stale (an unauthenticated socket, a
demoted node, a late reply) is ever reused. One attempt per call: retrying is the Redis-down
policy's decision (core/state/resilient.py), not the client's.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import Any, cast

import redis.exceptions

from core.state.errors import UNAVAILABLE, reply_error
from core.state.redis_url import RedisEndpoint, parse_endpoint


class ReplyError(redis.exceptions.ResponseError):
    """An error reply as parsed, before classification (`reply_error`)."""


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


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiters: deque[asyncio.Future[Any]] = deque()
        self.deadlines: deque[float] = deque()  # each waiter's, in the same order
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.lost = self.loop.create_future()
        self.outgoing: list[bytes] = []

    @property
    def usable(self) -> bool:
        transport = self.transport
        return not self.lost.done() and transport is not None and not transport.is_closing()

    def wait(self, waiter: asyncio.Future[Any], timeout_s: float | None) -> None:
        """`waiter` gets the next reply not yet promised, or fails after `timeout_s` (None:
        never on its own; the call behind it times out). One timer per connection, not one
        per call (~4 us made and cancelled): replies come in order, so the oldest waiter still
        waiting is the first to expire; the timer, when it fires, expires it or waits for its
        deadline."""
        self.waiters.append(waiter)
        if timeout_s is None:
            self.deadlines.append(math.inf)
            return
        self.deadlines.append(self.loop.time() + timeout_s)
        if self.timer is None:
            self.timer = self.loop.call_later(timeout_s, self._check)

    def _check(self) -> None:
        self.timer = None
        now = self.loop.time()
        for waiter, deadline in zip(self.waiters, self.deadlines, strict=True):
            if waiter.done() or deadline == math.inf:
                continue  # its caller was cancelled (its reply is dropped when it comes)
            if deadline <= now + 0.001:
                self.expire(waiter)
            else:
                self.timer = self.loop.call_at(deadline, self._check)
            return

    def send(self, data: bytes, at_once: bool = False) -> None:
        """Commands issued in the same loop iteration leave in one write. `at_once` (a command
        whose answer should be back before its caller runs much further: the hop nonce's
        claim) leaves now when it is the only one in flight: on an idle connection its round
        trip then overlaps the caller's work; under load, when replies are due anyway, it
        goes with the step's others (one write for many, as the rest)."""
        if at_once and not self.outgoing and len(self.waiters) == 1:
            self.outgoing.append(data)
            self._flush()
            return
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
                self.drop(redis.exceptions.ConnectionError(f"bad reply from redis: {exc}"))
                return
            if parsed is None:
                break
            reply, position = parsed
            if not self.waiters:
                self.drop(redis.exceptions.ConnectionError("a reply nobody asked for"))
                return
            waiter = self.waiters.popleft()
            self.deadlines.popleft()
            if isinstance(reply, ReplyError):
                error = reply_error(str(reply))
                if not waiter.done():  # a cancelled caller: its reply is dropped
                    waiter.set_exception(error)
                if isinstance(error, UNAVAILABLE):
                    self.drop(redis.exceptions.ConnectionError(f"redis refused: {error}"))
                    return
            elif not waiter.done():
                waiter.set_result(reply)
        del buffer[:position]

    def expire(self, waiter: asyncio.Future[Any]) -> None:
        """No reply in time: this call fails, and the connection goes (as in redis-py), since
        a stalled or half-open socket would otherwise time out every later call too."""
        if not waiter.done():
            waiter.set_exception(redis.exceptions.TimeoutError("redis did not answer in time"))
            self.drop(redis.exceptions.ConnectionError("connection dropped after a timeout"))

    def drop(self, error: Exception) -> None:
        """Fails every waiting call with `error` and closes: the next call reconnects."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)
        self.deadlines.clear()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.drop(redis.exceptions.ConnectionError("redis connection lost"))
        if not self.lost.done():
            self.lost.set_result(None)


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class Sent:
    """Commands sent to Redis by this process (each one round trip, pipelined on its
    connection; a script call is one): /metrics' interlock_redis_commands_total, and what the
    capacity plan's Redis round trips per request are measured from."""

    count = 0


class RespClient:
    def __init__(
        self, url: str, timeout_s: float = 1.0, endpoint: RedisEndpoint | None = None
    ) -> None:
        """`endpoint`: already parsed (a cluster node: the seed URL's credentials and TLS at
        the node's address, core.state.cluster); otherwise read from `url`."""
        self.endpoint: RedisEndpoint = endpoint or parse_endpoint(url)
        self.timeout_s = self.endpoint.timeout_s or timeout_s
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    async def _connection(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and protocol.usable:
            return protocol
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            protocol = self._protocol
            if protocol is None or not protocol.usable:
                self._protocol = None
                protocol = self._protocol = await self._open()
            return protocol

    async def _open(self) -> _Protocol:
        """A connected, authenticated connection on the right database, or an exception and
        nothing kept (a failed AUTH is never cached)."""
        endpoint, loop = self.endpoint, asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout_s):
                if endpoint.path is not None:
                    _, fresh = await loop.create_unix_connection(_Protocol, endpoint.path)
                else:
                    _, fresh = await loop.create_connection(
                        _Protocol,
                        endpoint.host,
                        endpoint.port,
                        ssl=endpoint.tls,
                        server_hostname=endpoint.host if endpoint.tls is not None else None,
                    )
        except (OSError, TimeoutError) as exc:
            raise redis.exceptions.ConnectionError(f"cannot reach redis: {exc}") from None
        try:
            for command in endpoint.handshake:
                await self._send(fresh, command)
        except BaseException:
            fresh.drop(redis.exceptions.ConnectionError("redis handshake failed"))
            raise
        return fresh

    async def _send(self, protocol: _Protocol, args: tuple[Any, ...], at_once: bool = False) -> Any:
        waiter: asyncio.Future[Any] = protocol.loop.create_future()
        protocol.wait(waiter, self.timeout_s)
        protocol.send(encode(args), at_once)
        Sent.count += 1
        try:
            return await waiter
        finally:  # a failed waiter holds its error, whose traceback holds this frame
            del waiter

    async def call(self, *args: Any, at_once: bool = False) -> Any:
        """One command's reply; it leaves with the others this loop step issues, or at once."""
        return await self._send(await self._connection(), args, at_once)

    async def keyed(self, key: str, *args: Any, at_once: bool = False) -> Any:
        """`call`, for a caller that names the key (one node: every key is here)."""
        return await self._send(await self._connection(), args, at_once)

    def owner(self, key: str) -> str:
        """Where `key` lives: one node, so one owner (the Redis-down policy's unit)."""
        return ""

    def owners(self) -> frozenset[str]:
        return frozenset(("",))

    async def ping(self) -> bool:
        return bool(await self.call("PING") == "PONG")

    async def call_asking(self, *args: Any) -> Any:
        """ASKING then the command, adjacent on one connection (a cluster slot being migrated:
        the target node serves the command only right after ASKING)."""
        protocol = await self._connection()
        asking: asyncio.Future[Any] = protocol.loop.create_future()
        asking.add_done_callback(_retrieved)  # its failure is the command's, reported below
        protocol.wait(asking, None)
        protocol.send(encode(("ASKING",)))
        return await self._send(protocol, args)  # queued at once, right behind ASKING

    async def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
