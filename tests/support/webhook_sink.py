"""A local webhook receiver (aiohttp on 127.0.0.1, its own thread): records every POST, and
answers the first `fail_first` of them with 503 so senders' retries can be seen."""

from __future__ import annotations

import orjson
from aiohttp import web

from tests.support.fake_server import FakeServer, Received


def webhook_sink(fail_first: int = 0) -> FakeServer:
    app = web.Application()
    server = FakeServer(app)

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        server.received.append(
            Received(request.method, request.path, dict(request.headers), body, orjson.loads(body))
        )
        if len(server.received) <= fail_first:
            return web.Response(status=503)
        return web.Response(status=204)

    app.router.add_post("/hook", hook)
    return server.start()
