"""A provider that accepts every POST and then says nothing for `delay` seconds before its
headers: the total (and first-byte) timeouts of any API, whatever its path."""

from __future__ import annotations

import asyncio

from aiohttp import web

from tests.support.fake_server import FakeServer, Received


class FakeStall(FakeServer):
    def __init__(self, delay: float = 5.0) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.stall)
        super().__init__(app)
        self.delay = delay

    async def stall(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(Received(request.method, request.path, dict(request.headers), body))
        await asyncio.sleep(self.delay)
        return web.Response(body=b"{}", content_type="application/json")
