"""core.providers.transport on its own, against a tiny aiohttp server on 127.0.0.1 (real sockets):
what
goes out (signed URLs byte for byte), the timeouts, and how every failure is mapped."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from core.providers.adapters.base import (
    ProviderError,
    Target,
    UpstreamRequest,
    failure_class_for_status,
)
from core.providers.transport import Transport, UpstreamBody
from core.resilience.retry import FAIL_OVER
from shared.config import ProviderConfig
from shared.errors import FailureClass
from tests.support.net import free_port
from tests.support.providers import provider_of

KEY = "sk-transport-test-key-0123456789"
PROVIDER = ProviderConfig("p", "openai", None, (KEY,), {}, None, False)
TARGET = Target(provider_of(PROVIDER), "m", PROVIDER.api_keys[0])
FIRST = b"data: first\n\n"
SIGNED_PATH = "/model/us.cohere.embed-v4%3A0/invoke"  # yarl alone would send `:` for `%3A`


async def stalled_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    await response.write(FIRST)
    await asyncio.sleep(5)
    return response


async def cut_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    await response.write(FIRST)
    assert request.transport is not None
    request.transport.close()
    return response


async def slow_headers(request: web.Request) -> web.Response:
    await asyncio.sleep(5)
    return web.Response(body=b"late")


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {"path": request.raw_path, "signed": request.headers.get("x-signed"), "body": body.decode()}
    )


async def failing(request: web.Request) -> web.Response:
    return web.Response(
        status=429,
        body=f"slow down, key {KEY} is over its limit".encode(),
        headers={"Retry-After": "3", "X-Upstream-Thing": "v"},
    )


def app() -> web.Application:
    application = web.Application()
    application.router.add_post("/echo", echo)
    application.router.add_post(SIGNED_PATH.replace("%3A", ":"), echo)
    application.router.add_post("/stall", stalled_stream)
    application.router.add_post("/cut", cut_stream)
    application.router.add_post("/slow", slow_headers)
    application.router.add_post("/fail", failing)
    return application


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[str]:
    runner = web.AppRunner(app(), access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class Signer:
    """Like SigV4: signs the request as built, with the URL in its percent-encoded form."""

    async def sign(self, request: UpstreamRequest) -> UpstreamRequest:
        headers = {**request.headers, "x-signed": "yes"}
        return UpstreamRequest(request.method, request.url, headers, request.body)


Seen = list[tuple[int, Mapping[str, str], bytes]]


def parser(seen: Seen) -> Callable[[int, Mapping[str, str], bytes], ProviderError]:
    def parse(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        seen.append((status, headers, body))
        return ProviderError(
            status, body.decode(), failure_class_for_status(status), upstream_status=status
        )

    return parse


def run(
    test: Callable[[Transport, str], Awaitable[Any]],
    total: float = 10,
    idle: float | None = None,
    signer: Signer | None = None,
) -> Any:
    async def main() -> Any:
        async with serving() as url, aiohttp.ClientSession() as session:
            timeout = aiohttp.ClientTimeout(total=total, sock_connect=2)
            return await test(Transport(lambda: session, timeout, signer, idle), url)

    return asyncio.run(main())


def post(url: str, body: bytes = b"{}") -> UpstreamRequest:
    return UpstreamRequest("POST", url, {"content-type": "application/json"}, body)


def test_fetch_returns_the_headers_and_the_body() -> None:
    async def test(transport: Transport, url: str) -> Any:
        return await transport.fetch(post(f"{url}/echo", b"hi"), TARGET, parser([]))

    headers, body = run(test)
    assert headers["Content-Type"].startswith("application/json")
    assert headers["content-type"].startswith("application/json")  # case-insensitive
    assert orjson.loads(body)["body"] == "hi"


@pytest.mark.parametrize("mode", ["fetch", "open"])
def test_an_error_status_is_parsed_then_scrubbed(mode: str) -> None:
    seen: Seen = []

    async def test(transport: Transport, url: str) -> Any:
        call = transport.fetch if mode == "fetch" else transport.open
        return await call(post(f"{url}/fail"), TARGET, parser(seen))

    with pytest.raises(ProviderError) as info:
        run(test)
    [(status, headers, body)] = seen
    assert status == 429 and headers["retry-after"] == "3"
    assert headers["x-upstream-thing"] == "v"  # lower-cased for the parser
    assert KEY.encode() in body  # the parser sees the upstream's words...
    error = info.value
    assert error.sanitized and KEY not in error.message  # ...no tenant ever does
    assert error.failure_class is FailureClass.RATE_LIMIT


def test_a_signed_url_goes_out_byte_for_byte() -> None:
    async def test(transport: Transport, url: str) -> Any:
        return await transport.fetch(post(f"{url}{SIGNED_PATH}"), TARGET, parser([]))

    _, body = run(test, signer=Signer())
    assert orjson.loads(body) == {"path": SIGNED_PATH, "signed": "yes", "body": "{}"}


def test_connection_refused_fails_over() -> None:
    async def test(transport: Transport, url: str) -> Any:
        return await transport.fetch(post(f"http://127.0.0.1:{free_port()}/x"), TARGET, parser([]))

    with pytest.raises(ProviderError) as info:
        run(test)
    assert info.value.status == 502
    assert info.value.message == "could not connect to the upstream provider"
    assert info.value.failure_class is FailureClass.TRANSIENT
    assert info.value.failure_class in FAIL_OVER


@pytest.mark.parametrize("mode", ["fetch", "open"])
def test_the_total_timeout_is_a_timeout(mode: str) -> None:
    async def test(transport: Transport, url: str) -> Any:
        call = transport.fetch if mode == "fetch" else transport.open
        return await call(post(f"{url}/slow"), TARGET, parser([]))

    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        run(test, total=0.3)
    assert time.monotonic() - started < 3
    assert (info.value.status, info.value.failure_class) == (504, FailureClass.TIMEOUT)
    assert info.value.message == "upstream provider timed out"


async def read_all(body: UpstreamBody, into: list[bytes]) -> None:
    try:
        while raw := await body.read():
            into.append(raw)
    finally:
        body.close()


def test_a_stream_that_stalls_mid_way_ends_at_the_idle_timeout() -> None:
    received: list[bytes] = []

    async def test(transport: Transport, url: str) -> Any:
        body = await transport.open(post(f"{url}/stall"), TARGET, parser([]))
        await read_all(body, received)

    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        run(test, idle=0.3)
    assert time.monotonic() - started < 3  # the upstream stays silent for 5 s
    assert received == [FIRST]  # what came before the stall was read
    assert (info.value.status, info.value.failure_class) == (504, FailureClass.TIMEOUT)
    assert info.value.message == "the upstream stream stalled (idle timeout)"


def test_a_stream_past_the_total_timeout_is_a_timeout_not_a_stall() -> None:
    async def test(transport: Transport, url: str) -> Any:
        body = await transport.open(post(f"{url}/stall"), TARGET, parser([]))
        await read_all(body, [])

    with pytest.raises(ProviderError) as info:
        run(test, total=0.5, idle=3)
    assert info.value.failure_class is FailureClass.TIMEOUT
    assert info.value.message == "upstream provider timed out"


def test_a_stream_cut_mid_way_is_transient() -> None:
    received: list[bytes] = []

    async def test(transport: Transport, url: str) -> Any:
        body = await transport.open(post(f"{url}/cut"), TARGET, parser([]))
        await read_all(body, received)

    with pytest.raises(ProviderError) as info:
        run(test, idle=3)
    assert received == [FIRST]
    assert info.value.failure_class is FailureClass.TRANSIENT
    assert info.value.message == "the upstream provider closed the connection"
