"""The hot-route table (shared.server_fast) answers as Starlette's own stack does, over a real
socket: each endpoint is served twice, at a fixed path (the table) and at a twin path with a
parameter (Starlette's router), and both answers must be the same bytes; everything the table
does not hold (other paths and methods, the skipped listener, an app with middleware) keeps
Starlette's way."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.http import EXCEPTION_HANDLERS
from shared.server_fast import FastApp
from tests.support import raw
from tests.support.asgi_server import serve


async def ok(request: Request) -> Response:
    body = await request.body()
    return Response(b"ok:" + body, headers={"x-seen": request.method})


async def teapot(request: Request) -> Response:
    raise HTTPException(418, "short and stout")


async def gone(request: Request) -> Response:
    raise ClientDisconnect()


async def crash(request: Request) -> Response:
    raise RuntimeError("deliberate")


async def stream(request: Request) -> Response:
    async def chunks() -> Iterator[bytes]:  # type: ignore[misc]
        yield b"one,"
        yield b"two"

    return StreamingResponse(chunks(), media_type="text/plain")


ENDPOINTS = {"ok": ok, "teapot": teapot, "gone": gone, "crash": crash, "stream": stream}


class Marker:
    """Middleware that says it saw the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], (b"x-marked", b"1")]}
            await send(message)

        await self.app(scope, receive, marked)


def build(middleware: bool = False) -> FastApp:
    routes: list[BaseRoute] = [Route(f"/{n}", fn, methods=["POST"]) for n, fn in ENDPOINTS.items()]
    routes += [Route(f"/{name}/{{twin}}", fn, methods=["POST"]) for name, fn in ENDPOINTS.items()]
    routes.append(Route("/get", ok, methods=["GET"]))
    app = FastApp(EXCEPTION_HANDLERS, routes, skip_port=None)
    app.router.routes = routes
    app.router.redirect_slashes = False  # as both tiers' routers
    if middleware:
        app.add_middleware(Marker)
    return app


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(build()) as base:
        yield base


def comparable(response: raw.RawResponse) -> tuple[int, dict[str, str], bytes]:
    headers = {k: v for k, v in response.headers.items() if k not in ("date",)}
    return response.status, headers, response.body


@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_a_hot_route_answers_as_starlettes_router_does(url: str, name: str) -> None:
    hot = raw.request("POST", f"{url}/{name}", b"hi")
    routed = raw.request("POST", f"{url}/{name}/x", b"hi")
    assert comparable(hot) == comparable(routed)


def test_the_answers_are_the_handlers_envelopes(url: str) -> None:
    assert raw.request("POST", f"{url}/ok", b"hi").body == b"ok:hi"
    teapot = raw.request("POST", f"{url}/teapot")
    assert teapot.status == 418 and teapot.json()["error"]["message"] == "short and stout"
    assert raw.request("POST", f"{url}/gone").status == 408
    crashed = raw.request("POST", f"{url}/crash")
    assert crashed.status == 500 and crashed.json()["error"]["code"] == "internal_error"
    assert crashed.headers["connection"] == "close"
    assert raw.request("POST", f"{url}/stream").body == b"one,two"


def test_what_the_table_does_not_hold_is_starlettes(url: str) -> None:
    assert raw.request("GET", f"{url}/ok").status == 405  # another method
    assert raw.request("POST", f"{url}/ok/").status == 404  # a trailing slash
    missing = raw.request("POST", f"{url}/nowhere")
    assert missing.status == 404 and missing.json()["error"]["code"] == "not_found"
    head = raw.request("HEAD", f"{url}/get")  # GET brings HEAD, as in Starlette
    assert head.status == 200 and head.headers["x-seen"] == "HEAD"


def test_a_skipped_port_takes_starlettes_way() -> None:
    app = build()
    app.router.routes = []  # the router knows nothing: only the table could answer
    with serve(app) as base:
        assert raw.request("POST", f"{base}/ok").status == 200
        app._skip_port = int(base.rsplit(":", 1)[1])
        assert raw.request("POST", f"{base}/ok").status == 404


def test_with_middleware_every_request_goes_through_it() -> None:
    with serve(build(middleware=True)) as base:
        assert raw.request("POST", f"{base}/ok", b"x").headers.get("x-marked") == "1"
