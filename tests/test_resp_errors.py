"""The lean RESP client fails exactly as redis-py does (core/state/errors.py's table).

Before: a failed AUTH stayed cached (later calls got NOAUTH), WRONGPASS/NOAUTH/LOADING were a
generic ResponseError (no Redis-down policy, so 500s), and rediss:// or unix:// URLs made the
store switch to redis-py. Real redis-servers where the server can produce the reply (wrong
password, LOADING, TLS, unix socket); a fake RESP server on 127.0.0.1 for the rest of the table,
with redis-py itself as the reference.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from core.state.errors import UNAVAILABLE
from core.state.redis_store import RedisStore
from core.state.resilient import ResilientStore
from core.state.resp import RespClient
from shared.errors import GatewayError
from tests.support.collector import collector_off
from tests.support.redis_server import RedisServer


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", requirepass="right-password").start()
    yield server
    server.stop()


def test_a_wrong_password_is_an_availability_error_and_is_not_cached(locked: RedisServer) -> None:
    async def scenario() -> object:
        client = RespClient(locked.url_with("wrong-password"))
        try:
            for _ in range(2):  # the second call reconnects: it is WRONGPASS again, not NOAUTH
                with pytest.raises(
                    redis.exceptions.AuthenticationError, match="invalid username-password"
                ):
                    await client.call("PING")
            locked.set_password("wrong-password")  # the operator fixes it: no restart
            return await client.call("PING")
        finally:
            await client.close()

    assert asyncio.run(scenario()) == "PONG"


def test_no_password_against_a_locked_server_is_noauth_and_drops(locked: RedisServer) -> None:
    async def scenario() -> None:
        client = RespClient(locked.url_with(None))
        try:
            with pytest.raises(redis.exceptions.AuthenticationError):
                await client.call("PING")
            await asyncio.sleep(0)
            assert client._protocol is None or not client._protocol.usable  # dropped
        finally:
            await client.close()

    asyncio.run(scenario())


def test_loading_is_an_availability_error_until_the_load_ends(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    server.save_dataset()
    server.stop()
    server.start(loading=True)

    async def scenario() -> object:
        client = RespClient(server.url)
        try:
            with pytest.raises(redis.exceptions.BusyLoadingError):
                await client.call("EVALSHA", "0" * 40, 0)
            server.finish_loading()
            for _ in range(50):
                try:
                    return await client.call("PING")
                except redis.exceptions.BusyLoadingError:
                    await asyncio.sleep(0.1)
            return None
        finally:
            await client.close()

    try:
        assert asyncio.run(scenario()) == "PONG"
    finally:
        server.stop()


@pytest.mark.parametrize("fail_open", [True, False])
def test_the_redis_down_policy_applies_to_a_wrong_password(
    locked: RedisServer, fail_open: bool
) -> None:
    async def scenario() -> object:
        store = ResilientStore(RedisStore(locked.url_with("wrong-password")), fail_open)
        try:
            return await store.claim("test:{policy}:nonce", 10)
        finally:
            await store.close()

    if fail_open:
        assert asyncio.run(scenario()) is True  # served from per-process state
    else:
        with pytest.raises(GatewayError) as refused:
            asyncio.run(scenario())
        assert refused.value.status == 503 and refused.value.code == "state_unavailable"


def test_a_tls_url_uses_the_lean_client_with_redis_py_certificate_checks(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", requirepass="pw", tls=True).start()
    unverified = server.url.split("?")[0]  # no CA: the server's certificate is not trusted

    async def scenario() -> object:
        store = RedisStore(server.url)
        lean, stock = RespClient(unverified), redis.asyncio.Redis.from_url(unverified)
        try:
            assert await store.claim("test:{tls}:k", 10) is True
            assert await store.claim("test:{tls}:k", 10) is False
            with pytest.raises(redis.exceptions.ConnectionError):
                await lean.call("PING")
            with pytest.raises(redis.exceptions.ConnectionError):
                await stock.ping()
            return await store.ping()
        finally:
            await store.close()
            await lean.close()
            await stock.aclose()

    try:
        assert asyncio.run(scenario()) is True
    finally:
        server.stop()


def test_a_unix_socket_url_uses_the_lean_client(locked: RedisServer) -> None:
    async def scenario() -> object:
        store = RedisStore(locked.unix_url)
        try:
            await store.set("test:{unix}:k", b"v", 10)
            return await store.get("test:{unix}:k")
        finally:
            await store.close()

    assert asyncio.run(scenario()) == b"v"


REPLIES = [
    b"-LOADING Redis is loading the dataset in memory",
    b"-NOAUTH Authentication required.",
    b"-WRONGPASS invalid username-password pair or user is disabled.",
    b"-ERR invalid password",
    b"-ERR max number of clients reached",
    b"-READONLY You can't write against a read only replica.",
    b"-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
    b"-CLUSTERDOWN The cluster is down",
    b"-TRYAGAIN Multiple keys request during rehashing of slot",
    b"-OOM command not allowed when used memory > 'maxmemory'.",
    b"-NOPERM this user has no permissions to run the 'evalsha' command",
    b"-NOSCRIPT No matching script. Please use EVAL.",
    b"-WRONGTYPE Operation against a key holding the wrong kind of value",
    b"-ERR unknown command 'X'",
]


class FakeRedis:
    """Answers every command with one error reply (CLIENT, redis-py's handshake, with +OK);
    counts connections, so a test can see whether the client dropped its own."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply + b"\r\n"
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                count = int((await reader.readuntil(b"\r\n"))[1:-2])
                parts = [await self._bulk(reader) for _ in range(count)]
                writer.write(b"+OK\r\n" if parts[0].upper() == b"CLIENT" else self.reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    @staticmethod
    async def _bulk(reader: asyncio.StreamReader) -> bytes:
        length = int((await reader.readuntil(b"\r\n"))[1:-2])
        return (await reader.readexactly(length + 2))[:-2]


async def _raised(call: object) -> BaseException:
    try:
        await call  # type: ignore[misc]
    except redis.exceptions.RedisError as exc:
        return exc
    raise AssertionError("no error raised")


@pytest.mark.parametrize("reply", REPLIES, ids=[r[1:].decode()[:24] for r in REPLIES])
def test_every_error_reply_raises_what_redis_py_raises(reply: bytes) -> None:
    async def scenario() -> tuple[type[BaseException], type[BaseException], int]:
        fake = FakeRedis(reply)
        server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
        url = f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0"
        lean = RespClient(url)
        stock = redis.asyncio.Redis.from_url(url, retry=Retry(NoBackoff(), 0))
        try:
            ours = await _raised(lean.call("EVALSHA", "0" * 40, 0))
            await _raised(lean.call("EVALSHA", "0" * 40, 0))
            reconnects = fake.connections - 1
            theirs = await _raised(stock.evalsha("0" * 40, 0))
            return type(ours), type(theirs), reconnects
        finally:
            await lean.close()
            await stock.aclose()
            server.close()

    ours, theirs, reconnects = asyncio.run(scenario())
    assert ours is theirs
    # the connection is dropped exactly when the Redis-down policy applies
    assert reconnects == (1 if issubclass(ours, UNAVAILABLE) else 0)
    unavailable = not reply.startswith((b"-NOSCRIPT", b"-WRONGTYPE", b"-ERR unknown"))
    assert issubclass(ours, UNAVAILABLE) is unavailable


def test_an_error_reply_leaves_no_cycle_for_the_collector() -> None:
    """The error is freed with its last reference: the waiting frame held its failed future,
    whose error's traceback held the frame (a cycle for every error reply, and for every
    command while Redis is down)."""

    async def scenario() -> weakref.ref[BaseException]:
        fake = FakeRedis(b"-NOSCRIPT No matching script. Please use EVAL.")
        server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
        lean = RespClient(f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0")
        try:
            return weakref.ref(await _raised(lean.call("EVALSHA", "0" * 40, 0)))
        finally:
            await lean.close()
            server.close()

    with collector_off():
        assert asyncio.run(scenario())() is None
