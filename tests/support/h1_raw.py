"""Raw asyncio HTTP servers on 127.0.0.1 for the shared.h1 client tests: each connection is
handed to a coroutine that reads and writes the wire bytes itself, so any framing (or any
misbehaviour) can be served exactly."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from shared.h1 import Client

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class Server:
    """A raw server: `handler` runs once per connection; `connections` counts them."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def session(handler: Handler, **options: Any) -> AsyncIterator[tuple[Server, Client]]:
    """A server, and a client whose pool is closed after the test."""
    async with Server(handler) as server:
        client = Client(**options)
        try:
            yield server, client
        finally:
            client.close()


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 20))


async def read_request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


async def get(client: Client, url: str, fresh: bool = False) -> bytes:
    """A GET's whole body."""
    return await (await client.request("GET", url, {}, fresh=fresh)).read()


def answering(*responses: bytes) -> Handler:
    """Answers each request on a connection with the next response (no request body)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for response in responses:
            await read_request(reader)
            writer.write(response)
            await writer.drain()
        await reader.read()

    return handler
