"""Remote image fetching: SSRF guard, size/time/type limits, redirects (real loopback server)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator

import pytest
from aiohttp import web

from core.images import GuardedResolver, ImageFetcher, address_allowed
from shared.errors import GatewayError
from tests.support.fake_server import FakeServer

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def _images_app() -> web.Application:
    app = web.Application()

    async def png(request: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "image/png"})
        await response.prepare(request)
        for _ in range(64):
            await response.write(b"\0" * 4096)
        return response

    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>", content_type="text/html")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/png")

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(body=PNG, content_type="image/png")

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404)

    for path, handler in [
        ("/png", png),
        ("/big", big),
        ("/html", html),
        ("/redirect", redirect),
        ("/loop", loop),
        ("/slow", slow),
        ("/missing", missing),
    ]:
        app.router.add_get(path, handler)
    return app


@pytest.fixture(scope="module")
def images() -> Iterator[FakeServer]:
    server = FakeServer(_images_app()).start()
    yield server
    server.stop()


async def _fetch(
    url: str, allow_private: bool = True, max_bytes: int = 100_000, limit_s: float = 10
) -> str:
    fetcher = ImageFetcher(max_bytes, limit_s, allow_private)
    await fetcher.start()
    try:
        return await fetcher.fetch(url, "messages[0].content[1].image_url.url")
    finally:
        await fetcher.close()


def _error(url: str, **kwargs: object) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        asyncio.run(_fetch(url, **kwargs))  # type: ignore[arg-type]
    assert info.value.status == 400
    assert info.value.param == "messages[0].content[1].image_url.url"
    return info.value


def test_fetches_as_data_url(images: FakeServer) -> None:
    data_url = asyncio.run(_fetch(f"{images.url}/png"))
    assert data_url == "data:image/png;base64," + base64.b64encode(PNG).decode()


def test_follows_redirects_and_stops_loops(images: FakeServer) -> None:
    assert asyncio.run(_fetch(f"{images.url}/redirect")).startswith("data:image/png;base64,")
    assert "too many redirects" in _error(f"{images.url}/loop").message


@pytest.mark.parametrize(
    "path,why",
    [
        ("/big", "larger than"),
        ("/html", "unsupported content type text/html"),
        ("/missing", "HTTP 404"),
    ],
)
def test_limits(images: FakeServer, path: str, why: str) -> None:
    assert why in _error(f"{images.url}{path}").message


def test_timeout(images: FakeServer) -> None:
    assert "too long" in _error(f"{images.url}/slow", limit_s=0.2).message


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "[::1]", "169.254.169.254", "10.0.0.1", "0.0.0.0"]
)
def test_guard_refuses_non_public_addresses(images: FakeServer, host: str) -> None:
    _error(f"http://{host}:{images.port}/png", allow_private=False)


def test_guard_refuses_other_schemes_and_credentials() -> None:
    _error("file:///etc/passwd", allow_private=False)
    _error("http://user:pw@example.com/x.png", allow_private=False)


def test_resolver_refuses_names_that_resolve_privately() -> None:
    async def resolve() -> None:
        resolver = GuardedResolver()
        try:
            await resolver.resolve("localhost", 80)
        finally:
            await resolver.close()

    with pytest.raises(OSError):
        asyncio.run(resolve())


@pytest.mark.parametrize(
    "address,allowed",
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("224.0.0.1", False),
        ("0.0.0.0", False),
    ],
)
def test_address_policy(address: str, allowed: bool) -> None:
    assert address_allowed(address) is allowed


def test_inline_replaces_only_remote_urls(images: FakeServer) -> None:
    payload = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"{images.url}/png", "detail": "low"},
                    },
                    {"type": "image_url", "image_url": {"url": "data:image/gif;base64,R0lG"}},
                ],
            },
        ],
    }

    async def run() -> dict[str, object]:
        fetcher = ImageFetcher(100_000, 5, True)
        await fetcher.start()
        try:
            return await fetcher.inline(payload)
        finally:
            await fetcher.close()

    result = asyncio.run(run())
    parts = result["messages"][0]["content"]  # type: ignore[index]
    assert parts[1]["image_url"] == {
        "url": "data:image/png;base64," + base64.b64encode(PNG).decode(),
        "detail": "low",
    }
    assert parts[2]["image_url"]["url"] == "data:image/gif;base64,R0lG"
    assert payload["messages"][0]["content"][1]["image_url"]["url"].startswith("http")  # type: ignore[index]
