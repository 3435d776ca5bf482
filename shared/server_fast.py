"""Hot API routes served straight from a (method, path) table, in front of Starlette's layers.

Starlette sends every request through ServerErrorMiddleware, ExceptionMiddleware, the router's
regex scan, the route and `request_response`, two of which wrap `send` in a closure of their
own: about a tenth of the core's CPU per request in the bench's profile (issue 17), for
routes whose paths are fixed strings. `FastApp` is the same Starlette app (routes, lifespan,
`state`, exception handlers) with one dict lookup first: an exact (method, path) of a
registered route runs its endpoint here, with the same exception handlers and the same
order of them as Starlette's stack; every other request (a path parameter, a trailing slash,
an unknown path or method, the admin listener, the lifespan, any request once middleware is
added) takes Starlette's way as before.

Both tiers can use it: build the app as `FastApp(handlers, routes)`; routes with path
parameters among them stay with the router.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Lifespan, Message, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, Exception], Awaitable[Response]]


class FastApp(Starlette):
    """Starlette with a table of exact-path routes served without its per-request layers.
    `skip_port`: a listener (the admin port) whose requests always take Starlette's way, since
    its router serves other routes there."""

    def __init__(
        self,
        exception_handlers: Mapping[Any, Handler],
        hot: Iterable[BaseRoute] = (),
        skip_port: int | None = None,
        *,
        routed: Sequence[BaseRoute] | None = None,
        lifespan: Lifespan[Any] | None = None,
    ) -> None:
        """`hot`: the routes to serve from the table; `routed` and `lifespan`: Starlette's
        (the router's routes, which may list the hot ones again for anything not exact)."""
        super().__init__(
            routes=routed, exception_handlers=dict(exception_handlers), lifespan=lifespan
        )
        self._hot: dict[tuple[str, str], Endpoint] = {}
        self.hot(hot)
        self._skip_port = skip_port
        # As Starlette splits them: Exception (or 500) answers last, in ServerErrorMiddleware;
        # the others (by status code for HTTPException, else by class) in ExceptionMiddleware.
        self._server_error = exception_handlers.get(Exception) or exception_handlers.get(500)
        handled = {k: v for k, v in exception_handlers.items() if k not in (Exception, 500)}
        self._by_status = {k: v for k, v in handled.items() if isinstance(k, int)}
        self._by_class = {k: v for k, v in handled.items() if not isinstance(k, int)}

    def hot(self, routes: Iterable[BaseRoute]) -> None:
        """Serves these routes from the table (every method each accepts: GET brings HEAD, as
        in Starlette). Routes with path parameters, mounts and ASGI apps stay with the router."""
        for route in routes:
            if not isinstance(route, Route) or "{" in route.path or not route.methods:
                continue
            if not inspect.iscoroutinefunction(route.endpoint):
                continue  # an ASGI app or a sync function: Starlette's to run
            for method in route.methods:
                self._hot[(method, route.path)] = route.endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Middleware (a test's, say) must see every request: with any, the table is not used.
        if scope["type"] == "http" and not self.user_middleware and not scope.get("root_path"):
            endpoint = self._hot.get((scope["method"], scope["path"]))
            server = scope.get("server")
            if endpoint is not None and not (server and server[1] == self._skip_port):
                scope["app"] = self
                await self._serve(endpoint, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _serve(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        """Starlette's request_response, its exception middleware and its server-error
        middleware in one frame: a handled exception answers if nothing was sent yet; any
        other gets the 500 handler's answer (if nothing was sent yet) and is raised again, so
        that the server logs it and closes the connection, as Starlette does."""
        started = False

        async def sender(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        request = Request(scope, receive, sender)
        try:
            response = await endpoint(request)
            await response(scope, receive, sender)
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is not None:
                if started:
                    message = "Caught handled exception, but response already started."
                    raise RuntimeError(message) from exc
                await (await handler(request, exc))(scope, receive, sender)
                exc.__traceback__ = None  # as Starlette: a reused instance keeps no traceback
                return
            if not started and self._server_error is not None:
                await (await self._server_error(Request(scope), exc))(scope, receive, send)
            raise

    def _handler_for(self, exc: Exception) -> Handler | None:
        """ExceptionMiddleware's choice: a status code's handler, else the nearest class's."""
        if isinstance(exc, HTTPException) and exc.status_code in self._by_status:
            return self._by_status[exc.status_code]
        for cls in type(exc).__mro__:
            if cls in self._by_class:
                return self._by_class[cls]
        return None
