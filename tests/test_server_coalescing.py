"""A response's head leaves with its first body bytes (shared.server_write.Coalescing).

uvicorn writes the head and the body of every response separately: two send() calls, and two
reads for the peer. The server's protocol holds the head until the body comes in the same loop
step, or until the step ends. What it writes is counted on a recording transport; what a
client receives (pipelined requests, a stream whose first chunk comes late, a 500 that closes
the connection, HEAD) over a real socket, through the real protocol.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from shared.config_server import ServerConfig
from shared.http import EXCEPTION_HANDLERS
from shared.server_protocol import configured
from shared.server_write import Coalescing
from tests.support.asgi_server import serve
from tests.support.sockets import connect, wait_outcome

LATE_S = 0.3


class Recording:
    """The transport calls Coalescing makes, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def close(self) -> None:
        self.calls.append(("close", b""))
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing


class Cycle:
    """What Coalescing reads of uvicorn's request cycle."""

    def __init__(self) -> None:
        self.response_started = False


def started(writer: Coalescing) -> None:
    """A new cycle whose response has begun: its next write is the head."""
    writer.cycle = cycle = Cycle()
    cycle.response_started = True


def test_the_head_and_the_body_leave_in_one_write() -> None:
    asyncio.run(head_and_body())


def test_a_head_alone_leaves_at_the_end_of_the_step_and_before_a_close() -> None:
    asyncio.run(head_alone())


async def head_and_body() -> None:
    transport = Recording()
    writer = Coalescing(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    writer.cycle = cycle = Cycle()
    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # an interim answer goes at once
    assert transport.calls == [("write", b"HTTP/1.1 100 Continue\r\n\r\n")]
    transport.calls.clear()
    cycle.response_started = True
    writer.write(b"HEAD;")
    assert transport.calls == []
    writer.write(b"body")
    writer.write(b"more")  # later chunks go straight out
    assert transport.calls == [("write", b"HEAD;body"), ("write", b"more")]
    await asyncio.sleep(0)
    assert len(transport.calls) == 2  # nothing held: the end of the step writes nothing


async def head_alone() -> None:
    transport = Recording()
    writer = Coalescing(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    started(writer)
    writer.write(b"HEAD;")
    await asyncio.sleep(0)
    assert transport.calls == [("write", b"HEAD;")]
    started(writer)
    writer.write(b"HEAD2;")
    writer.close()
    assert transport.calls[1:] == [("write", b"HEAD2;"), ("close", b"")]
    assert writer.is_closing()
    await asyncio.sleep(0)
    assert len(transport.calls) == 3  # written once, not again at the end of the step


async def small(request: Request) -> Response:
    return Response(b"small:" + request.url.path.encode(), media_type="text/plain")


async def late(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        await asyncio.sleep(LATE_S)
        yield b"late"

    return StreamingResponse(chunks(), media_type="text/plain")


async def crash(request: Request) -> Response:
    raise RuntimeError("deliberate")


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    routes = [Route(p, fn, methods=["GET"]) for p, fn in (("/a", small), ("/b", small))]
    routes += [Route("/late", late, methods=["GET"]), Route("/crash", crash, methods=["GET"])]
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)
    with serve(app, configured(ServerConfig(), 64, "httptools")) as base:
        yield int(base.rsplit(":", 1)[1])


def read_until(port: int, request: bytes, end: bytes) -> bytes:
    """Everything the server sends for `request` up to (and with) `end`."""
    sock = connect(port)
    try:
        sock.sendall(request)
        data = b""
        while not data.endswith(end):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    finally:
        sock.close()
    return data


def test_pipelined_requests_are_answered_in_order(port: int) -> None:
    two = b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nGET /b HTTP/1.1\r\nhost: x\r\n\r\n"
    data = read_until(port, two, b"small:/b")
    assert data.count(b"HTTP/1.1 200") == 2
    assert data.index(b"small:/a") < data.index(b"HTTP/1.1 200", 1)


def test_a_streams_head_does_not_wait_for_its_first_chunk(port: int) -> None:
    sock = connect(port)
    try:
        started = time.monotonic()
        sock.sendall(b"GET /late HTTP/1.1\r\nhost: x\r\n\r\n")
        data = sock.recv(65536)
        waited = time.monotonic() - started
        while not data.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    finally:
        sock.close()
    assert data.startswith(b"HTTP/1.1 200") and waited < LATE_S  # the head came alone, early
    assert data.endswith(b"\r\n\r\n4\r\nlate\r\n0\r\n\r\n")


def test_a_500_arrives_whole_and_closes(port: int) -> None:
    sock = connect(port)
    try:
        sock.sendall(b"GET /crash HTTP/1.1\r\nhost: x\r\n\r\n")
        outcome = wait_outcome(sock, 5)
    finally:
        sock.close()
    assert outcome.status == 500 and outcome.closed
    assert outcome.headers["connection"] == "close"
    assert b"internal_error" in outcome.body


def test_head_gets_the_head_only(port: int) -> None:
    two = b"HEAD /a HTTP/1.1\r\nhost: x\r\n\r\nGET /b HTTP/1.1\r\nhost: x\r\n\r\n"
    data = read_until(port, two, b"small:/b")
    assert data.count(b"HTTP/1.1 200") == 2 and data.count(b"small:") == 1
