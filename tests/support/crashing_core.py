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


class CrashOnMarker:
    """Raises inside the app (under Starlette's error middleware, as a bug would)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (b"idempotency-key", MARKER.encode()) in scope["headers"]:
            raise RuntimeError("deliberate crash for a test")
        await self.app(scope, receive, send)


def create_app(config: Config) -> Starlette:
    app = create_core_app(config)
    app.add_middleware(CrashOnMarker)
    return app
