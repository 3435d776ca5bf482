"""The lean pipelined Redis client: parsing, pipelining, timeouts, reconnects (real Redis)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
import redis.exceptions
from hypothesis import given
from hypothesis import strategies as st

from core.state.buckets import BucketSpec
from core.state.redis_store import RedisStore
from core.state.resp import ReplyError, RespClient, encode, parse
from tests.support.redis_server import RedisServer

REPLIES = (
    b"+OK\r\n:42\r\n$5\r\nhello\r\n$-1\r\n*3\r\n:1\r\n$1\r\n0\r\n*1\r\n$0\r\n\r\n"
    b"-NOSCRIPT No matching script\r\n"
)
VALUES = ["OK", 42, b"hello", None, [1, b"0", [b""]]]


def parse_all(data: bytes) -> list[object]:
    out, position = [], 0
    while position < len(data):
        parsed = parse(data, position)
        assert parsed is not None
        value, position = parsed
        out.append(value)
    return out


def test_parse_every_type() -> None:
    values = parse_all(REPLIES)
    assert values[:5] == VALUES
    assert isinstance(values[5], ReplyError) and str(values[5]).startswith("NOSCRIPT")


@given(st.integers(0, len(REPLIES)))
def test_incomplete_replies_wait_for_more(cut: int) -> None:
    head = REPLIES[:cut]
    position, count = 0, 0
    while (parsed := parse(head, position)) is not None:
        position = parsed[1]
        count += 1
    assert count <= 6 and (position == cut or parse(head, position) is None)


def test_encode() -> None:
    assert (
        encode(("SET", b"k", 1, 0.5)) == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n$3\r\n0.5\r\n"
    )


def test_pipelined_calls_get_their_own_replies(redis_url: str) -> None:
    async def scenario() -> list[object]:
        client = RespClient(redis_url)
        try:
            return await asyncio.gather(*(client.call("ECHO", f"m{i}") for i in range(500)))
        finally:
            await client.close()

    assert asyncio.run(scenario()) == [f"m{i}".encode() for i in range(500)]


def test_error_replies_raise_without_breaking_the_connection(redis_url: str) -> None:
    async def scenario() -> object:
        client = RespClient(redis_url)
        try:
            with pytest.raises(redis.exceptions.ResponseError):
                await client.call("NOT-A-COMMAND")
            return await client.call("PING")
        finally:
            await client.close()

    assert asyncio.run(scenario()) == "PONG"


def test_script_is_reloaded_after_a_flush(redis_url: str) -> None:
    async def scenario() -> tuple[bool, bool]:
        store = RedisStore(redis_url)
        try:
            spec = [BucketSpec("test:{flush}:k", 10, 1, 1)]
            first = await store.take(spec)
            await store._client.call("SCRIPT", "FLUSH")
            second = await store.take(spec)  # NOSCRIPT -> SCRIPT LOAD -> retried
            return first.allowed, second.allowed
        finally:
            await store.close()

    assert asyncio.run(scenario()) == (True, True)


def test_reconnects_after_redis_restarts(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "r").start()

    async def scenario() -> object:
        client = RespClient(server.url, timeout_s=0.5)
        try:
            assert await client.call("PING") == "PONG"
            server.stop()
            with pytest.raises(redis.exceptions.ConnectionError):
                await client.call("PING")
            server.start()
            return await client.call("PING")
        finally:
            await client.close()

    try:
        assert asyncio.run(scenario()) == "PONG"
    finally:
        server.stop()


def test_timed_out_call_does_not_steal_the_next_reply() -> None:
    """A slow fake server: the first reply comes late; the second caller gets its own (the
    timed-out connection is dropped, as redis-py drops it, so the late reply reaches no one)."""

    async def scenario() -> object:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                while True:
                    line = await reader.readuntil(b"\r\n")
                    if line in (b"slow\r\n", b"fast\r\n"):
                        if line == b"slow\r\n":
                            await asyncio.sleep(0.3)
                        writer.write(b"$4\r\n" + line)
                        await writer.drain()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = RespClient(f"redis://127.0.0.1:{port}/0", timeout_s=0.1)
        try:
            with pytest.raises(redis.exceptions.TimeoutError):
                await client.call("ECHO", "slow")
            client.timeout_s = 2
            return await client.call("ECHO", "fast")
        finally:
            await client.close()
            server.close()

    assert asyncio.run(scenario()) == b"fast"


async def _silent_after_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A fake server that answers `quick` at once and never answers anything else."""
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        while True:
            line = await reader.readuntil(b"\r\n")
            if line == b"quick\r\n":
                writer.write(b"$5\r\nquick\r\n")
                await writer.drain()


def test_each_call_times_out_after_its_own_timeout() -> None:
    """One timer per connection: a call made after another has its own deadline, measured from
    when it was sent, not the first call's; a cancelled caller's silence drops nothing."""

    async def scenario() -> tuple[float, object]:
        server = await asyncio.start_server(_silent_after_first, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = RespClient(f"redis://127.0.0.1:{port}/0", timeout_s=0.2)
        try:
            cancelled = asyncio.ensure_future(client.call("ECHO", "never"))
            await asyncio.sleep(0.05)
            cancelled.cancel()
            await asyncio.sleep(0.1)
            started = asyncio.get_running_loop().time()
            with pytest.raises(redis.exceptions.TimeoutError):
                await client.call("ECHO", "silent")  # the cancelled call's deadline passes first
            elapsed = asyncio.get_running_loop().time() - started
            return elapsed, await client.call("ECHO", "quick")  # a new connection
        finally:
            await client.close()
            server.close()

    elapsed, reply = asyncio.run(scenario())
    assert 0.18 <= elapsed < 1.0 and reply == b"quick"


class Writes:
    """The writes a connection makes, counted (the transport beneath passes them on)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.transport.write(data)

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def close(self) -> None:
        self.transport.close()


def test_a_command_at_once_leaves_now_alone_and_with_the_step_under_load(redis_url: str) -> None:
    """`at_once` (the hop nonce's claim) is written before its caller runs on when nothing
    else is in flight; with replies due, it waits for the step's write like any command."""

    async def main() -> None:
        client = RespClient(redis_url)
        try:
            protocol = await client._connection()
            assert protocol.transport is not None
            seen = Writes(protocol.transport)
            protocol.transport = seen  # type: ignore[assignment]
            alone = asyncio.ensure_future(client.call("SET", "at-once", "1", at_once=True))
            await asyncio.sleep(0)  # its first step issues it
            assert seen.writes == [encode(("SET", "at-once", "1"))]  # before the step ended
            assert await alone == "OK"
            seen.writes.clear()
            calls = [client.call("GET", "at-once"), client.call("DEL", "at-once", at_once=True)]
            assert await asyncio.gather(*calls) == [b"1", 1]
            assert seen.writes == [encode(("GET", "at-once")) + encode(("DEL", "at-once"))]
        finally:
            await client.close()

    asyncio.run(main())
