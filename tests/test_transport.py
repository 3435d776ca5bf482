"""core.providers.transport on its own, against a tiny aiohttp server on 127.0.0.1 (real sockets):
what
goes out (signed URLs byte for byte), the timeouts, and how every failure is mapped."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import orjson
import pytest
from aiohttp import web

from core.providers.adapters.base import (
    ProviderError,
    Target,
    UpstreamRequest,
    failure_class_for_status,
)
from core.providers.client import ProviderClient
from core.providers.transport import (
    BodyLimits,
    Timeouts,
    Transport,
    UpstreamBody,
    transport_error,
)
from core.resilience.retry import FAIL_OVER, retries_same_target
from shared.config import ProviderConfig
from shared.errors import FailureClass
from shared.h1 import H1Timeout
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


BIG = 256 * 1024


async def big(request: web.Request) -> web.StreamResponse:
    """BIG bytes (with `?status`); `?chunked` leaves out Content-Length, so only counting can
    catch it."""
    if "chunked" not in request.query:
        status = int(request.query.get("status", "200"))
        return web.Response(status=status, body=b"x" * BIG, content_type="application/json")
    response = web.StreamResponse(headers={"content-type": "application/json"})
    await response.prepare(request)
    for _ in range(BIG // 4096):
        await response.write(b"x" * 4096)
    return response


async def drip(request: web.Request) -> web.StreamResponse:
    """FIRST, then `?size` bytes every 0.1 s for 5 s: never idle, never done quickly."""
    size = int(request.query.get("size", "1"))
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    await response.write(FIRST)
    for _ in range(50):
        await asyncio.sleep(0.1)
        await response.write(b":" * size)
    return response


def app() -> web.Application:
    application = web.Application()
    application.router.add_post("/big", big)
    application.router.add_post("/drip", drip)
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
    limits: BodyLimits | None = None,
) -> Any:
    async def main() -> Any:
        async with serving() as url:
            client = ProviderClient(16)
            timeouts = Timeouts(total_s=total, connect_s=2)
            bounds = limits or BodyLimits(idle_timeout_s=idle)
            try:
                return await test(Transport(lambda: client, timeouts, signer, bounds), url)
            finally:
                client.close()

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
    assert info.value.code == "timeout_total" and "(total timeout)" in info.value.message


def test_a_whole_answer_whose_body_stalls_ends_at_the_total_timeout() -> None:
    """One clock covers fetch's send and read: the head arrives at once, the body never
    ends, and the call fails at the total timeout (not later, not as a transport error)."""

    async def test(transport: Transport, url: str) -> Any:
        return await transport.fetch(post(f"{url}/stall"), TARGET, parser([]))

    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        run(test, total=0.4)
    assert 0.3 < time.monotonic() - started < 3
    assert info.value.code == "timeout_total"


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
    assert info.value.code == "timeout_idle"


def test_a_stream_past_the_total_timeout_is_a_timeout_not_a_stall() -> None:
    async def test(transport: Transport, url: str) -> Any:
        body = await transport.open(post(f"{url}/stall"), TARGET, parser([]))
        await read_all(body, [])

    with pytest.raises(ProviderError) as info:
        run(test, total=0.5, idle=3)
    assert info.value.failure_class is FailureClass.TIMEOUT
    assert info.value.code == "timeout_total"


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


# A success of `fetch`, or an error body (read whole by both modes); a successful `open` is a
# stream, capped per event by its decoder.
WHOLE = [("fetch", "/big"), ("fetch", "/big?chunked"), ("fetch", "/big?status=500")]


@pytest.mark.parametrize(("mode", "path"), [*WHOLE, ("open", "/big?status=500")])
def test_a_whole_answer_over_the_cap_is_refused_and_fails_over(mode: str, path: str) -> None:
    async def test(transport: Transport, url: str) -> Any:
        call = transport.fetch if mode == "fetch" else transport.open
        return await call(post(f"{url}{path}"), TARGET, parser([]))

    with pytest.raises(ProviderError) as info:
        run(test, limits=BodyLimits(max_response_bytes=BIG - 1))
    error = info.value
    assert (error.status, error.message, error.code) == (
        502,
        "upstream response too large",
        "response_too_large",
    )
    assert error.failure_class in FAIL_OVER
    assert not retries_same_target(error, retry_timeouts=True)


def test_a_whole_answer_at_the_cap_is_read() -> None:
    async def test(transport: Transport, url: str) -> Any:
        return await transport.fetch(post(f"{url}/big?chunked"), TARGET, parser([]))

    _, body = run(test, limits=BodyLimits(max_response_bytes=BIG))
    assert len(body) == BIG


async def read_for(transport: Transport, url: str, received: list[bytes]) -> None:
    body = await transport.open(post(url), TARGET, parser([]))
    await read_all(body, received)


def test_a_stream_that_trickles_ends_at_the_throughput_window() -> None:
    """10 bytes every 0.1 s is never idle; under 1000 bytes a 0.5 s window is a throughput
    timeout, named as such (it was reported as idle, or ran to the total timeout)."""
    received: list[bytes] = []
    limits = BodyLimits(idle_timeout_s=3, min_bytes=1000, window_s=0.5)
    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        run(lambda t, url: read_for(t, f"{url}/drip?size=10", received), limits=limits)
    assert time.monotonic() - started < 3  # the drip lasts 5 s
    assert received[0] == FIRST and len(received) > 1  # the trickle was read until then
    error = info.value
    assert (error.status, error.code) == (504, "timeout_throughput")
    assert "(throughput timeout)" in error.message
    assert not retries_same_target(error, retry_timeouts=False)


def test_a_stream_that_keeps_its_minimum_is_never_cut() -> None:
    """Keep-alive pings count: 10 bytes every 0.1 s meets 20 bytes per 0.5 s to the end."""
    received: list[bytes] = []
    limits = BodyLimits(idle_timeout_s=3, min_bytes=20, window_s=0.5)
    run(lambda t, url: read_for(t, f"{url}/drip?size=10", received), limits=limits)
    assert len(b"".join(received)) == len(FIRST) + 500


def test_a_connect_timeout_is_named_and_the_only_timeout_retried_on_the_same_target() -> None:
    connect = transport_error(H1Timeout("connect"))
    total = transport_error(TimeoutError())
    assert (connect.code, total.code) == ("timeout_connect", "timeout_total")
    assert "(connect timeout)" in connect.message
    assert retries_same_target(connect, retry_timeouts=False)
    assert not retries_same_target(total, retry_timeouts=False)
    assert retries_same_target(total, retry_timeouts=True)
