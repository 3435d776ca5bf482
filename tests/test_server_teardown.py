"""A closed connection's protocol is freed when it closes, not by the cyclic collector.

Objects left in reference cycles wait for the collector's older generations, which run
seldom; under connection churn an edge's memory grew by megabytes of closed connections
(transport, request cycle, buffers) before they ran. With the collector off, every protocol
of a closed connection must be gone once the server has seen the close.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shared.config_server import ServerConfig
from shared.server_protocol import configured
from tests.support.asgi_server import serve
from tests.support.sockets import connect


async def hello(request: Request) -> Response:
    return Response(b"hello", media_type="text/plain")


@pytest.fixture(params=["httptools", "h11"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[int, type]]:
    protocol = configured(ServerConfig(), 64, request.param)
    app = Starlette(routes=[Route("/", hello, methods=["GET"])])
    with serve(app, protocol) as base:
        yield int(base.rsplit(":", 1)[1]), protocol


def _live(protocol: type) -> int:
    return sum(1 for o in gc.get_objects() if type(o) is protocol)


def test_closed_connections_leave_no_protocol_for_the_cycle_collector(
    server: tuple[int, type],
) -> None:
    port, protocol = server
    gc.collect()
    gc.disable()
    try:
        for _ in range(20):
            sock = connect(port)
            sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            data = b""
            while not data.endswith(b"hello"):
                chunk = sock.recv(65536)
                assert chunk
                data += chunk
            sock.close()
        deadline = time.monotonic() + 5
        while _live(protocol) and time.monotonic() < deadline:
            time.sleep(0.02)  # the server thread sees the closes
        assert _live(protocol) == 0
    finally:
        gc.enable()
