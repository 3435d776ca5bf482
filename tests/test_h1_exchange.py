"""shared/h1/client.py's exchanges against raw asyncio servers on 127.0.0.1: Expect:
100-continue (no body before the acknowledgement), chunked request bodies, backpressure on a
slow reader, read timeouts between chunks."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator

import pytest

from shared.h1 import BodyFailed, Client, H1Timeout, Response
from shared.h1.connection import HIGH_WATER
from tests.support.h1_raw import (
    OK,
    get,
    read_request,
    run,
    session,
)


async def post_expecting(client: Client, url: str, body: bytes, events: list[str]) -> Response:
    """A POST with `Expect: 100-continue` whose acknowledgement is noted in `events`."""
    acknowledged = functools.partial(events.append, "acknowledged")
    return await client.request(
        "POST", url, {}, body, expect_continue=True, on_continue=acknowledged
    )


def test_expect_continue_holds_the_body_until_the_acknowledgement():
    events: list[str] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_request(reader)
        assert b"expect: 100-continue" in head
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(1), 0.3)  # nothing before the 100
        events.append("server: nothing early")
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        events.append(f"server: {(await reader.readexactly(4)).decode()}")
        writer.write(OK)
        await reader.read()

    async def test() -> None:
        async with session(handler) as (server, client):
            response = await post_expecting(client, server.url, b"body", events)
            assert await response.read() == b"ok"

    run(test)
    assert events == ["server: nothing early", "acknowledged", "server: body"]


def test_an_answer_before_the_acknowledgement_means_the_body_never_went():
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 401 No\r\nContent-Length: 2\r\n\r\nno")
        rest.append(await reader.read())

    async def test() -> None:
        acknowledged: list[str] = []
        async with session(handler) as (server, client):
            response = await post_expecting(client, server.url, b"x", acknowledged)
            assert (response.status, await response.read(), acknowledged) == (401, b"no", [])
            await asyncio.sleep(0.1)

    rest: list[bytes] = []
    run(test)
    assert rest == [b""]  # no body, and the client closed the connection


def test_an_eager_body_goes_with_its_head_and_the_continue_is_still_reported():
    events: list[str] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):  # the same connection serves the next request too
            head = await read_request(reader)
            assert b"expect: 100-continue" in head
            events.append(f"server: {(await reader.readexactly(4)).decode()} before the 100")
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)

    async def test() -> None:
        async with session(handler) as (server, client):
            for _ in range(2):
                acknowledged = functools.partial(events.append, "acknowledged")
                response = await client.request(
                    "POST",
                    server.url,
                    {},
                    b"body",
                    expect_continue=True,
                    eager=True,
                    on_continue=acknowledged,
                )
                assert (response.status, await response.read()) == (200, b"ok")
            assert server.connections == 1

    run(test)
    assert events == ["server: body before the 100", "acknowledged"] * 2


def test_an_eager_body_answered_without_a_continue_keeps_its_connection():
    """The peer refused the request whole (its body went with the head and was read), so the
    connection is reusable: unlike a body held back for an acknowledgement that never came."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.readexactly(1)
        writer.write(b"HTTP/1.1 401 No\r\nContent-Length: 2\r\n\r\nno")
        await read_request(reader)
        writer.write(OK)

    async def test() -> None:
        async with session(handler) as (server, client):
            refused = await client.request(
                "POST", server.url, {}, b"x", expect_continue=True, eager=True
            )
            assert (refused.status, await refused.read()) == (401, b"no")
            assert await get(client, server.url) == b"ok"
            assert server.connections == 1

    run(test)


async def _pieces(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        await asyncio.sleep(0)
        yield piece


def test_an_async_iterator_body_goes_out_chunked():
    received: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await read_request(reader))
        received.append(await reader.readuntil(b"0\r\n\r\n"))
        writer.write(OK)
        await reader.read()

    async def test() -> None:
        async with session(handler) as (server, client):
            body = _pieces(b"hello", b"", b"x" * 300)
            response = await client.request("POST", server.url + "/u", {}, body)
            assert await response.read() == b"ok"

    run(test)
    assert received[0].endswith(b"transfer-encoding: chunked\r\n\r\n")
    assert received[1] == b"5\r\nhello\r\n12c\r\n" + b"x" * 300 + b"\r\n0\r\n\r\n"


def test_a_failing_body_source_ends_the_exchange_with_body_failed():
    async def broken() -> AsyncIterator[bytes]:
        yield b"start"
        raise LookupError("the source broke")

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # a cut body: never answered

    async def test() -> None:
        async with session(handler) as (server, client):
            with pytest.raises(BodyFailed) as failure:
                await client.request("POST", server.url, {}, broken())
            assert isinstance(failure.value.__cause__, LookupError)

    run(test)


def test_a_slow_reader_pauses_the_socket_instead_of_buffering():
    size = 8 * 1024 * 1024

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size // 65536):
            writer.write(b"x" * 65536)
            await writer.drain()
        await reader.read()

    async def test() -> None:
        async with session(handler) as (server, client):
            response = await client.request("GET", server.url, {})
            await asyncio.sleep(0.5)  # the server could send it all, were nothing paused
            queued = response._conn._queued
            assert response._conn._paused and HIGH_WATER < queued < 2 * HIGH_WATER
            assert len(await response.read()) == size

    run(test)


def test_read_timeouts_bound_every_silence():
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        if b"/stall-body" in request:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc")
        await reader.read()

    async def test() -> None:
        async with session(handler) as (server, client):
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(H1Timeout):
                await client.request("GET", server.url + "/stall-head", {}, read_timeout=0.3)
            response = await client.request("GET", server.url + "/stall-body", {}, read_timeout=0.3)
            assert await response.next_chunk() == b"abc"
            with pytest.raises(H1Timeout) as timeout:
                await response.next_chunk()
            assert timeout.value.kind == "read" and 0.5 < loop.time() - started < 2

    run(test)
