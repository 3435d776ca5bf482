"""A real core whose app never answers requests that carry a marker: a request stuck in
flight, for the drain tests (tests/test_drain.py).

Test-only: it wraps core.app's app outermost, before the hop check, so a raw request straight
to the core's port with the marker in `idempotency-key` hangs, and every other request is
served normally. Run through the same launcher as the real core (`Stack.start(core_app=...)`).
"""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from core.app import create_app as create_core_app
from shared.config import Config

HANGING_CORE = "tests.support.hanging_core:create_app"
MARKER = "hang-the-core"


class HangOnMarker:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (b"idempotency-key", MARKER.encode()) in scope["headers"]:
            await asyncio.Event().wait()  # never set: this request never ends by itself
        await self.app(scope, receive, send)


def create_app(config: Config) -> Starlette:
    app = create_core_app(config)
    app.add_middleware(HangOnMarker)
    return app
