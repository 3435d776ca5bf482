"""shared/h1: a `Sized` async-iterator body (a spooled upload relayed to a provider, whose
size is known) goes out as is under its Content-Length, unchunked, and one that turns out
shorter or longer than that fails with BodyFailed instead of leaving the peer waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from shared.h1 import BodyFailed
from shared.h1.client import Sized
from tests.support.h1_raw import OK, read_request, run, session


async def pieces(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(0)
        yield part


def test_a_sized_async_iterator_body_goes_out_unchunked() -> None:
    received: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await read_request(reader))
        received.append(await reader.readexactly(305))
        writer.write(OK)
        await reader.read()

    async def test() -> None:
        async with session(handler) as (server, client):
            body = Sized(pieces(b"hello", b"", b"x" * 300), 305)
            headers = {"Content-Length": "999", "content-type": "multipart/form-data"}
            response = await client.request("POST", server.url + "/u", headers, body)
            assert await response.read() == b"ok"

    run(test)
    head = received[0].decode()
    assert "content-length: 305\r\n" in head and "chunked" not in head
    assert head.lower().count("content-length:") == 1  # the caller's is not sent
    assert received[1] == b"hello" + b"x" * 300


@pytest.mark.parametrize("declared", [4, 9])
def test_a_sized_body_of_another_length_fails(declared: int) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # never answered: only the client can end this

    async def test() -> None:
        async with session(handler) as (server, client):
            body = Sized(pieces(b"abc", b"de"), declared)
            with pytest.raises(BodyFailed):
                await client.request("POST", server.url, {}, body)

    run(test)


def test_a_negative_length_is_refused() -> None:
    with pytest.raises(ValueError):
        Sized(pieces(b"x"), -1)
