"""shared/h1: an async-iterator body whose Content-Length the caller gives (a spooled upload
relayed to a provider) goes out as is, unchunked, and one that turns out shorter or longer
than that fails with BodyFailed instead of leaving the peer waiting for the rest."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from shared.h1 import BodyFailed
from tests.test_h1_client import OK, read_request, run, session


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
            body = pieces(b"hello", b"", b"x" * 300)
            headers = {"Content-Length": "305", "content-type": "multipart/form-data"}
            response = await client.request("POST", server.url + "/u", headers, body)
            assert await response.read() == b"ok"

    run(test)
    head = received[0].decode()
    assert "content-length: 305\r\n" in head and "chunked" not in head
    assert head.count("ength:") == 1  # the caller's header is replaced, not repeated
    assert received[1] == b"hello" + b"x" * 300


@pytest.mark.parametrize("declared", ["4", "9"])
def test_a_sized_body_of_another_length_fails(declared: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # never answered: only the client can end this

    async def test() -> None:
        async with session(handler) as (server, client):
            headers = {"content-length": declared}
            with pytest.raises(BodyFailed):
                await client.request("POST", server.url, headers, pieces(b"abc", b"de"))

    run(test)


def test_a_bad_content_length_for_a_sized_body_is_refused() -> None:
    async def test() -> None:
        async with session(read_request) as (server, client):  # type: ignore[arg-type]
            with pytest.raises(ValueError):
                await client.request("POST", server.url, {"content-length": "-1"}, pieces(b"x"))

    run(test)
