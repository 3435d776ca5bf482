"""A provider that goes silent, for every timeout the transport owns, whatever the API's path.

Scripted by the request body's `model`:
  stall-midstream      -> an Anthropic stream: message_start, a text block's start, a ping and
                          its first delta (tests.support.fake_anthropic's bytes), then silence
  stall-first-event    -> the headers of an event stream, then silence before any event
  (anything else)      -> silence before the headers (total and first-byte timeouts)
Each silence lasts `delay` seconds (5 by default), far past the timeouts the tests configure.
Every request is recorded in `received` (see FakeServer).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from tests.support.fake_anthropic import encode, message, stream_events
from tests.support.fake_server import FakeServer, Received


class FakeStall(FakeServer):
    def __init__(self, delay: float = 5.0) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.stall)
        super().__init__(app)
        self.delay = delay

    async def stall(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: Any = orjson.loads(raw) if raw else None
        self.received.append(Received(request.method, request.path, dict(request.headers), raw))
        model = body.get("model") if isinstance(body, dict) else None
        if model not in ("stall-midstream", "stall-first-event"):
            await asyncio.sleep(self.delay)
            return web.Response(body=b"{}", content_type="application/json")
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        if model == "stall-midstream":
            for name, payload in stream_events(message(model, body))[:4]:
                await response.write(encode(name, payload))
        await asyncio.sleep(self.delay)
        return response
