"""shared/h1/client.py against raw asyncio servers on 127.0.0.1 (tests/support/h1_raw.py):
the request as sent, keep-alive reuse, stale and expired connections, failures (lost, refused,
timed out, garbage, capped, cancelled)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from shared.h1 import (
    BodyTooLarge,
    Client,
    ConnectFailed,
    Disconnected,
    H1Timeout,
    ProtocolError,
)
from tests.support.h1_raw import (
    OK,
    Server,
    answering,
    get,
    read_request,
    run,
    session,
)


def test_a_connection_is_reused_only_after_its_response_was_read_to_its_end():
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"

    async def test() -> None:
        async with session(answering(OK, chunked, head, OK)) as (server, client):
            assert await get(client, server.url + "/") == b"ok"
            assert await get(client, server.url + "/") == b"ok"
            assert await (await client.request("HEAD", server.url + "/", {})).read() == b""
            unread = await client.request("GET", server.url + "/", {})
            unread.release()  # not read: closed, never pooled
            assert await get(client, server.url + "/") == b"ok"
            assert server.connections == 2

    run(test)


def test_a_body_until_close_and_connection_close_are_never_reused():
    until_close = b"HTTP/1.1 200 OK\r\n\r\nall of it"
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(until_close if server.connections == 1 else closing)

    async def test() -> None:
        nonlocal server
        async with session(handler) as (server, client):
            assert await get(client, server.url) == b"all of it"
            assert await get(client, server.url) == b"ok"
            assert await get(client, server.url) == b"ok"
            assert server.connections == 3

    server: Server
    run(test)


def test_interim_responses_are_skipped_and_the_request_goes_out_as_given():
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        seen.append(await reader.readexactly(3))
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK)

    async def test() -> None:
        async with session(handler) as (server, client):
            headers = {"X-Key": "v", "Content-Length": "99", "Host": "signed.example"}
            response = await client.request("POST", server.url + "/p?q=1", headers, b"abc")
            assert (response.status, await response.read()) == (200, b"ok")

    run(test)
    assert seen == [
        b"POST /p?q=1 HTTP/1.1\r\nHost: signed.example\r\nX-Key: v\r\ncontent-length: 3\r\n\r\n",
        b"abc",
    ]


def test_a_stale_pooled_connection_is_never_written_to():
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK)
        await writer.drain()  # then closes, as a server ending an idle keep-alive does

    async def test() -> None:
        async with session(handler) as (server, client):
            assert await get(client, server.url) == b"ok"
            await asyncio.sleep(0.1)  # the FIN arrives while the connection is idle
            assert await get(client, server.url) == b"ok"
            assert server.connections == 2

    run(test)


def test_idle_connections_expire_and_are_bounded_per_origin():
    async def test() -> None:
        async with session(answering(OK, OK), idle_s=0.2, max_idle=1) as (server, client):
            first, second = [await client.request("GET", server.url, {}) for _ in range(2)]
            await first.read()
            await second.read()  # a second idle one is over the bound: closed
            origin = next(iter(client.pool._idle))
            assert client.pool.idle_count(origin) == 1
            await asyncio.sleep(0.5)
            assert client.pool.idle_count(origin) == 0
            assert await get(client, server.url) == b"ok"
            assert server.connections == 3

    run(test)


def test_fresh_always_makes_a_new_connection_and_never_pools_it():
    async def test() -> None:
        async with session(answering(OK, OK)) as (server, client):
            await get(client, server.url)
            await get(client, server.url, fresh=True)
            await get(client, server.url)
            assert server.connections == 2

    run(test)


def test_a_connection_lost_before_any_response_is_disconnected():
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if server.connections == 2:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc")

    async def test() -> None:
        nonlocal server
        async with session(handler) as (server, client):
            with pytest.raises(Disconnected) as lost:
                await client.request("GET", server.url, {})
            assert not lost.value.responded
            response = await client.request("GET", server.url, {})
            with pytest.raises(Disconnected) as cut:
                await response.read()
            assert cut.value.responded

    server: Server
    run(test)


def test_connect_failures_and_timeouts():
    async def test() -> None:
        client = Client()
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            port = unused.getsockname()[1]
        with pytest.raises(ConnectFailed):
            await client.request("GET", f"http://127.0.0.1:{port}/", {})
        with socket.socket() as full:  # a backlog that is full: the handshake never completes
            full.bind(("127.0.0.1", 0))
            full.listen(0)
            address = full.getsockname()
            fillers = [socket.socket() for _ in range(3)]
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex(address)
            await asyncio.sleep(0.1)
            with pytest.raises(H1Timeout) as timeout:
                await client.request(
                    "GET", f"http://{address[0]}:{address[1]}/", {}, connect_timeout=0.3
                )
            assert timeout.value.kind == "connect"
            for filler in fillers:
                filler.close()

    run(test)


def test_caps_refuse_a_large_body_before_or_while_reading_it():
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nsix by\r\n0\r\n\r\n"
    announced = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n"

    async def test() -> None:
        async with Server(answering(announced)) as one, Server(answering(chunked)) as two:
            client = Client()
            for server in (one, two):
                response = await client.request("GET", server.url, {})
                with pytest.raises(BodyTooLarge):
                    await response.read(cap=5)
            assert all(not idle for idle in client.pool._idle.values())

    run(test)


def test_a_cancelled_request_closes_its_connection():
    closed = asyncio.Event

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        assert await reader.read() == b""
        ended.set()

    async def test() -> None:
        nonlocal ended
        ended = closed()
        async with session(handler) as (server, client):
            task = asyncio.ensure_future(client.request("GET", server.url, {}))
            await asyncio.sleep(0.1)
            task.cancel()
            await asyncio.wait_for(ended.wait(), 2)

    ended: asyncio.Event
    run(test)


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        b"HTTP/1.1 101 Switching\r\n\r\n",
        b"SSH-2.0\r\n\r\n",
    ],
)
def test_garbage_is_a_protocol_error(response):
    async def test() -> None:
        async with session(answering(response)) as (server, client):
            with pytest.raises(ProtocolError):
                await client.request("GET", server.url, {})

    run(test)


def test_header_injection_is_refused_before_anything_is_sent():
    async def test() -> None:
        client = Client()
        for headers, target in (({"x": "a\r\nb: c"}, "/"), ({}, "/a b"), ({"x\n": "v"}, "/")):
            with pytest.raises(ValueError):
                await client.request("GET", "http://127.0.0.1:9" + target, headers)

    run(test)


def test_a_shorter_read_timeout_on_a_reused_connection_still_holds():
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(0.05)  # the first exchange waits: its 10 s timer is armed
        writer.write(OK)
        await read_request(reader)
        await reader.read()  # the second is never answered

    async def test() -> None:
        async with session(handler) as (server, client):
            first = await client.request("GET", server.url, {}, read_timeout=10)
            assert await first.read() == b"ok"
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(H1Timeout):
                await client.request("GET", server.url, {}, read_timeout=0.3)
            assert loop.time() - started < 2
            assert server.connections == 1

    run(test)
