"""Routes by the listener a connection came in on: the admin port serves only operator routes.

/metrics and /readyz carry internal state (target names, Redis health) and must not answer
tenants or anything else that can reach the public port. Binding them to a separate listener
of the same process (shared/server.py opens both sockets) needs no credential for probes and
scrapers to carry, and keeps them on loopback unless an operator opens them up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Router
from starlette.types import Receive, Scope, Send


class ListenerRouter(Router):
    """`public` on every listener but the admin port, `admin` only there. Neither redirects a
    missing or extra trailing slash: Starlette would build the Location from the Host header."""

    def __init__(
        self,
        public: Sequence[BaseRoute],
        admin: Sequence[BaseRoute],
        admin_port: int,
        lifespan: Any = None,
    ) -> None:
        super().__init__(public, redirect_slashes=False, lifespan=lifespan)
        self.admin = Router(admin, redirect_slashes=False)
        self.admin_port = admin_port

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if scope["type"] == "http" and server is not None and server[1] == self.admin_port:
            await self.admin.app(scope, receive, send)
        else:
            await super().app(scope, receive, send)
