"""A loopback image server for the remote-image tests: test images, failure modes (404, HTML,
oversize, redirect loops, stalls, cookies) and counters of hits and concurrent requests."""

from __future__ import annotations

import asyncio
import base64

from aiohttp import web

from tests.support.fake_server import FakeServer

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


class ImageServer(FakeServer):
    """Serves test images and counts hits and the most requests it saw in flight at once."""

    def __init__(self) -> None:
        app = web.Application()
        for path, handler in [
            ("/png", self.png),
            ("/big", self.big),
            ("/html", self.html),
            ("/redirect", self.redirect),
            ("/loop", self.loop),
            ("/slow", self.slow),
            ("/missing", self.missing),
            ("/cookie", self.cookie),
            ("/no-cookie", self.no_cookie),
            ("/held/{n}", self.held),
            ("/sized/{n}/{size}", self.sized),
            ("/mislabelled", self.mislabelled),
        ]:
            app.router.add_get(path, handler)
        super().__init__(app)
        self.in_flight = self.peak = 0

    async def png(self, request: web.Request) -> web.Response:
        self.calls[request.path] += 1
        return web.Response(body=PNG, content_type="image/png")

    async def big(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "image/png"})
        await response.prepare(request)
        for _ in range(64):
            await response.write(PNG[:8] + b"\0" * 4088)
        return response

    async def mislabelled(self, request: web.Request) -> web.Response:
        return web.Response(text="<svg onload=alert(1)>", content_type="image/png")

    async def html(self, request: web.Request) -> web.Response:
        return web.Response(text="<html>", content_type="text/html")

    async def redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query.get("to", "/png"))

    async def loop(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(body=PNG, content_type="image/png")

    async def missing(self, request: web.Request) -> web.Response:
        return web.Response(status=404)

    async def cookie(self, request: web.Request) -> web.Response:
        response = web.Response(body=PNG, content_type="image/png")
        response.set_cookie("tenant", "a-secret")
        return response

    async def no_cookie(self, request: web.Request) -> web.Response:
        status = 400 if "cookie" in request.headers else 200
        return web.Response(status=status, body=PNG, content_type="image/png")

    async def held(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.1)
        finally:
            self.in_flight -= 1
        return web.Response(body=PNG, content_type="image/png")

    async def sized(self, request: web.Request) -> web.Response:
        self.calls["sized"] += 1
        size = int(request.match_info["size"])
        return web.Response(body=PNG[:8] + b"\0" * (size - 8), content_type="image/png")
