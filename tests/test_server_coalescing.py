"""A response's head leaves with its first body bytes, the rest of what it writes in one step of
the loop in one write (shared.server_write.Coalescing), and a `100 Continue` for a body that
came whole goes only to a request not answered soon.

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

from shared import server_write
from shared.config_server import ServerConfig
from shared.http import EXCEPTION_HANDLERS
from shared.server_protocol import configured
from shared.server_write import CONTINUE, CONTINUE_DEFER_S, Coalescing
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

    def __init__(self, more_body: bool = True) -> None:
        self.response_started = False
        self.more_body = more_body  # uvicorn's: the body is still to come


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
    assert transport.calls == [("write", b"HEAD;body")]  # the first body bytes: at once
    writer.write(b"more;")
    writer.write(b"again")  # later chunks this step: together, at its end
    assert len(transport.calls) == 1
    await asyncio.sleep(0)
    assert transport.calls[1:] == [("write", b"more;again")]
    writer.write(b"next")
    writer.close()  # what is held goes before the close
    assert transport.calls[2:] == [("write", b"next"), ("close", b"")]
    await asyncio.sleep(0)
    assert len(transport.calls) == 4  # written once, not again at the end of the step


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


def test_a_body_already_in_defers_the_100_continue_and_a_quick_answer_drops_it() -> None:
    asyncio.run(continue_deferred())


async def continue_deferred() -> None:
    transport = Recording()
    writer = Coalescing(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    writer.cycle = quick = Cycle(more_body=False)
    writer.write(CONTINUE)
    assert transport.calls == []
    quick.response_started = True
    writer.write(b"HEAD;")
    writer.write(b"body")
    await asyncio.sleep(CONTINUE_DEFER_S * 2)
    assert transport.calls == [("write", b"HEAD;body")]  # never a 100 after the answer
    transport.calls.clear()
    writer.cycle = slow = Cycle(more_body=False)
    writer.write(CONTINUE)
    await asyncio.sleep(CONTINUE_DEFER_S * 2)
    assert transport.calls == [("write", CONTINUE)]  # not answered in time: acknowledged
    slow.response_started = True
    writer.write(b"HEAD;")
    writer.write(b"body")
    assert transport.calls[1:] == [("write", b"HEAD;body")]
    writer.cycle = Cycle(more_body=False)
    writer.write(CONTINUE)
    writer.close()  # a closed connection acknowledges nothing
    await asyncio.sleep(CONTINUE_DEFER_S * 2)
    assert transport.calls[2:] == [("close", b"")]


async def echo(request: Request) -> Response:
    body = await request.body()
    if request.query_params.get("wait"):
        await asyncio.sleep(float(request.query_params["wait"]))
    return Response(b"got:" + body, media_type="text/plain")


async def small(request: Request) -> Response:
    return Response(b"small:" + request.url.path.encode(), media_type="text/plain")


async def late(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        await asyncio.sleep(LATE_S)
        yield b"late"

    return StreamingResponse(chunks(), media_type="text/plain")


async def bursts(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for number in range(20):  # one step: written together after the first
            yield b"%d;" % number
        await asyncio.sleep(LATE_S)
        yield b"late"

    return StreamingResponse(chunks(), media_type="text/plain")


async def crash(request: Request) -> Response:
    raise RuntimeError("deliberate")


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    routes = [Route(p, fn, methods=["GET"]) for p, fn in (("/a", small), ("/b", small))]
    routes += [Route("/late", late, methods=["GET"]), Route("/crash", crash, methods=["GET"])]
    routes += [Route("/echo", echo, methods=["POST"]), Route("/bursts", bursts, methods=["GET"])]
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


def test_a_burst_of_chunks_is_not_held_past_its_step(port: int) -> None:
    sock = connect(port)
    try:
        started = time.monotonic()
        sock.sendall(b"GET /bursts HTTP/1.1\r\nhost: x\r\n\r\n")
        data = b""
        while b"19;" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        waited = time.monotonic() - started
        while not data.endswith(b"0\r\n\r\n"):
            data += sock.recv(65536)
    finally:
        sock.close()
    assert waited < LATE_S  # the burst came before the late chunk was even made
    body = data.split(b"\r\n\r\n", 1)[1]
    assert body.startswith(b"2\r\n0;\r\n2\r\n1;\r\n") and body.endswith(b"4\r\nlate\r\n0\r\n\r\n")


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


def expecting(path: str, body: bytes | None) -> bytes:
    """A POST asking for `100 Continue`, with its body (`None`: the head alone)."""
    head = f"POST {path} HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n"
    return head.encode() + (body or b"")


def test_a_body_sent_with_its_head_is_answered_without_a_100_continue(
    port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_write, "CONTINUE_DEFER_S", 2.0)  # a loaded machine is slow too
    data = read_until(port, expecting("/echo", b"hi"), b"got:hi")
    assert data.startswith(b"HTTP/1.1 200") and b" 100 " not in data


def test_a_slow_answer_to_a_body_sent_with_its_head_is_acknowledged_first(port: int) -> None:
    wait = f"/echo?wait={CONTINUE_DEFER_S * 5}"
    data = read_until(port, expecting(wait, b"hi"), b"got:hi")
    assert data.startswith(CONTINUE + b"HTTP/1.1 200")


def test_a_client_waiting_to_send_its_body_gets_the_100_continue_at_once(port: int) -> None:
    sock = connect(port)
    try:
        sock.sendall(expecting("/echo", None))
        # (that it goes at once, not deferred, is test_the_head_and_the_body_leave_in_one_write)
        interim = b""
        while len(interim) < len(CONTINUE):
            interim += sock.recv(len(CONTINUE) - len(interim))
        sock.sendall(b"hi")
        data = sock.recv(65536)
    finally:
        sock.close()
    assert interim == CONTINUE and data.startswith(b"HTTP/1.1 200") and data.endswith(b"got:hi")
