"""A real core whose app raises an unhandled exception for requests that carry a marker.

Test-only, and outside the production code: it wraps core.app's app, and the test stack runs
it through the same launcher as the real core (`Stack.start(core_app=CRASHING_CORE)`). The
marker is the `idempotency-key` header, which the edge forwards, so a tenant's request through
the real edge can crash the core while every other request is served normally.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from core.app import create_app as create_core_app
from shared.config import Config

CRASHING_CORE = "tests.support.crashing_core:create_app"
MARKER = "crash-the-core"


class OnMarker:
    """Runs `act` for a request whose `idempotency-key` is `marker`, before the real app;
    every other request goes straight through."""

    marker = MARKER

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._header = (b"idempotency-key", self.marker.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._header in scope["headers"]:
            await self.act()
        await self.app(scope, receive, send)

    async def act(self) -> None:
        raise NotImplementedError


class CrashOnMarker(OnMarker):
    """Raises inside the app (under Starlette's error middleware, as a bug would)."""

    async def act(self) -> None:
        raise RuntimeError("deliberate crash for a test")


def create_app(config: Config) -> Starlette:
    app = create_core_app(config)
    app.add_middleware(CrashOnMarker)
    return app
