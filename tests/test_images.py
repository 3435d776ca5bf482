"""Remote image fetching in process, against a real loopback server: limits, redirects, the
uniform error, caps and concurrency. The server's port is allow-listed exactly (the production
guard stays on for everything else); address-policy units are in test_ssrf_policy.py and the
through-the-stack proofs in test_ssrf_e2e.py.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from core.images.fetcher import ImageFetcher, ImageLimits, sniff
from core.providers.adapters.base import JSON, Capabilities, Target
from core.resilience.dispatch import _Payloads
from core.routing.planning import plan_chat as plan
from core.routing.registry import Candidate, ModelRegistry
from shared.config import ProviderConfig
from shared.errors import GatewayError
from tests.support.fake_images import PNG, ImageServer
from tests.support.net import free_port
from tests.support.providers import provider_of

PARAM = "messages[0].content[1].image_url.url"


@pytest.fixture(scope="module")
def images() -> Iterator[ImageServer]:
    server = ImageServer().start()
    yield server
    server.stop()


def _fetcher(server: ImageServer, **limits: Any) -> ImageFetcher:
    allowed = {"max_bytes": 100_000, "timeout_s": 10.0, **limits}
    return ImageFetcher(ImageLimits(**allowed), allow_hosts=(("127.0.0.1", server.port),))


async def _fetch(fetcher: ImageFetcher, url: str) -> str:
    await fetcher.start()
    try:
        return await fetcher.fetch(url, PARAM)
    finally:
        await fetcher.close()


async def _inline(fetcher: ImageFetcher, payload: JSON) -> JSON:
    await fetcher.start()
    try:
        return await fetcher.inline(payload)
    finally:
        await fetcher.close()


def _error(fetcher: ImageFetcher, url: str, caplog: pytest.LogCaptureFixture, why: str) -> None:
    """The uniform 400; the real reason only in the operator's log."""
    caplog.clear()
    with (
        caplog.at_level(logging.WARNING, "interlock.core.images"),
        pytest.raises(GatewayError) as info,
    ):
        asyncio.run(_fetch(fetcher, url))
    error = info.value
    assert (error.status, error.param, error.code) == (400, PARAM, "invalid_image_url")
    assert error.message == (
        f"the image at {PARAM} could not be used: it must be an http(s) URL of a publicly "
        f"reachable PNG, JPEG, GIF or WebP image of at most {fetcher.limits.max_bytes} bytes"
    )
    assert why in caplog.text
    assert "?" not in caplog.text  # query strings (signatures, tokens) are not logged


def _payload(*urls: str) -> JSON:
    parts = [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return {"model": "m", "messages": [{"role": "user", "content": parts}]}


def test_fetches_as_data_url(images: ImageServer) -> None:
    data_url = asyncio.run(_fetch(_fetcher(images), f"{images.url}/png"))
    assert data_url == "data:image/png;base64," + base64.b64encode(PNG).decode()


def test_follows_redirects_and_stops_loops(
    images: ImageServer, caplog: pytest.LogCaptureFixture
) -> None:
    fetcher = _fetcher(images)
    assert asyncio.run(_fetch(fetcher, f"{images.url}/redirect")).startswith("data:image/png")
    _error(fetcher, f"{images.url}/loop?sig=s", caplog, "too many redirects")


def test_redirect_to_a_refused_address_is_refused(
    images: ImageServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The allow-listed server redirects to another loopback port: that hop is refused."""
    other = f"http://127.0.0.1:{free_port()}/png"
    _error(_fetcher(images), f"{images.url}/redirect?to={other}", caplog, "non-public address")


@pytest.mark.parametrize(
    "path,why",
    [
        ("/big", "larger than 100000 bytes"),
        ("/html", "unsupported content type text/html"),
        ("/missing", "HTTP 404"),
        ("/mislabelled", "not a PNG, JPEG, GIF or WebP image (sent as image/png)"),
    ],
)
def test_limits(images: ImageServer, caplog: pytest.LogCaptureFixture, path: str, why: str) -> None:
    _error(_fetcher(images), f"{images.url}{path}?token=t", caplog, why)


def test_timeout_covers_the_whole_fetch(
    images: ImageServer, caplog: pytest.LogCaptureFixture
) -> None:
    _error(_fetcher(images, timeout_s=0.2), f"{images.url}/slow", caplog, "timed out")


def test_connection_refused_and_non_public_look_the_same(
    images: ImageServer, caplog: pytest.LogCaptureFixture
) -> None:
    closed = free_port()
    fetcher = ImageFetcher(ImageLimits(), allow_hosts=(("127.0.0.1", closed),))
    _error(fetcher, f"http://127.0.0.1:{closed}/png", caplog, "Connect call failed")
    _error(fetcher, f"http://localhost:{images.port}/png", caplog, "non-public address")
    _error(fetcher, "http://user:pw@example.com/x.png", caplog, "credentials")


def test_no_cookies_carry_over_between_fetches(images: ImageServer) -> None:
    """One shared session serves every tenant: a cookie set for one must not be replayed."""

    async def run() -> str:
        fetcher = _fetcher(images)
        await fetcher.start()
        try:
            await fetcher.fetch(f"{images.url}/cookie", PARAM)
            return await fetcher.fetch(f"{images.url}/no-cookie", PARAM)
        finally:
            await fetcher.close()

    assert asyncio.run(run()).startswith("data:image/png")


def test_inline_replaces_only_remote_urls(images: ImageServer) -> None:
    payload: JSON = {
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
    result = asyncio.run(_inline(_fetcher(images), payload))
    parts = result["messages"][0]["content"]
    assert parts[1]["image_url"] == {
        "url": "data:image/png;base64," + base64.b64encode(PNG).decode(),
        "detail": "low",
    }
    assert parts[2]["image_url"]["url"] == "data:image/gif;base64,R0lG"
    assert payload["messages"][0]["content"][1]["image_url"]["url"].startswith("http")


def test_count_cap_is_checked_before_anything_is_fetched(images: ImageServer) -> None:
    images.reset()
    urls = [f"{images.url}/sized/{n}/10" for n in range(5)]
    with pytest.raises(GatewayError) as info:
        asyncio.run(_inline(_fetcher(images, max_count=4), _payload(*urls)))
    assert (info.value.status, info.value.code) == (400, "too_many_images")
    assert info.value.param == "messages[0].content[4].image_url.url"
    assert images.calls["sized"] == 0


def test_identical_urls_are_fetched_once(images: ImageServer) -> None:
    images.reset()
    result = asyncio.run(_inline(_fetcher(images), _payload(*[f"{images.url}/png"] * 5)))
    assert images.calls["/png"] == 1
    urls = {part["image_url"]["url"] for part in result["messages"][0]["content"]}
    assert urls == {"data:image/png;base64," + base64.b64encode(PNG).decode()}


@pytest.mark.parametrize("distinct", [True, False])
def test_total_cap_counts_every_occurrence(images: ImageServer, distinct: bool) -> None:
    """4 x 3000 bytes > 10000 whether the URLs differ or repeat (each copy goes upstream)."""
    urls = [f"{images.url}/sized/{n if distinct else 0}/3000" for n in range(4)]
    fetcher = _fetcher(images, max_total_bytes=10_000)
    with pytest.raises(GatewayError) as info:
        asyncio.run(_inline(fetcher, _payload(*urls)))
    assert (info.value.status, info.value.code, info.value.param) == (
        400,
        "images_too_large",
        "messages",
    )
    fine = asyncio.run(_inline(_fetcher(images, max_total_bytes=12_000), _payload(*urls)))
    assert len(fine["messages"][0]["content"]) == 4


def test_fetches_per_request_are_limited(images: ImageServer) -> None:
    images.peak = 0
    urls = [f"{images.url}/held/{n}" for n in range(8)]
    asyncio.run(_inline(_fetcher(images, per_request=2), _payload(*urls)))
    assert images.peak == 2


def test_fetches_per_process_are_bounded(images: ImageServer) -> None:
    """One slot for the process, four slow fetches at once: the ones that cannot get a slot
    within the fetch timeout get a 503 to retry (server load, not the tenant's URL)."""

    async def run() -> list[BaseException | str]:
        fetcher = _fetcher(images, process_wide=1, timeout_s=0.3)
        await fetcher.start()
        try:
            return await asyncio.gather(
                *(fetcher.fetch(f"{images.url}/slow", PARAM) for _ in range(4)),
                return_exceptions=True,
            )
        finally:
            await fetcher.close()

    outcomes = asyncio.run(run())
    assert all(isinstance(o, GatewayError) for o in outcomes)
    codes = sorted(o.code or "" for o in outcomes if isinstance(o, GatewayError))
    assert codes.count("invalid_image_url") <= 2  # at most two ever held the single slot
    busy = [o for o in outcomes if isinstance(o, GatewayError) and o.code == "image_fetch_busy"]
    assert busy and all(b.status == 503 and b.headers["retry-after"] == "1" for b in busy)


class _Stub:
    async def complete(self, canonical: JSON, target: Target) -> JSON:
        return {}

    async def stream(self, canonical: JSON, target: Target) -> AsyncIterator[JSON]:
        yield {}

    def capabilities(self, target: Target) -> Capabilities:
        raise NotImplementedError


def test_payload_variants_share_one_fetch() -> None:
    """A lenient route gives each bytes-only target its own trimmed payload: the images are
    still fetched once per request, not once per variant."""
    strict_caps = Capabilities(image_urls=False, params=frozenset({"temperature"}))
    full_caps = Capabilities(image_urls=False)
    candidates = [
        Candidate(
            Target(provider_of(ProviderConfig(n, "stub", None, (), {}, None, False)), n, None),
            _Stub(),
            c,
        )
        for n, c in [("a", strict_caps), ("b", full_caps)]
    ]
    route = ModelRegistry._route("m", candidates, False)
    payload = {**_payload("https://example.com/a.png"), "seed": 1}
    attempts = plan(route, payload)
    assert attempts[0].payload is not attempts[1].payload
    calls: list[JSON] = []

    async def inliner(p: JSON) -> JSON:
        calls.append(p)
        return {**p, "messages": [{"role": "user", "content": "inlined"}]}

    async def run() -> list[JSON]:
        payloads = _Payloads(inliner)
        return [await payloads.for_attempt(a) for a in attempts]

    first, second = asyncio.run(run())
    assert len(calls) == 1
    assert first["messages"] == second["messages"] == [{"role": "user", "content": "inlined"}]
    assert "seed" not in first and second["seed"] == 1


@pytest.mark.parametrize(
    "body,media",
    [
        (PNG, "image/png"),
        (b"\xff\xd8\xff\xe0\0\x10JFIF", "image/jpeg"),
        (b"GIF89a\x01\0", "image/gif"),
        (b"RIFF\x24\0\0\0WEBPVP8 ", "image/webp"),
        (b"<svg/>", None),
        (b"RIFF\x24\0\0\0WAVEfmt ", None),
        (b"", None),
    ],
)
def test_sniff_uses_the_bytes_not_the_label(body: bytes, media: str | None) -> None:
    assert sniff(body) == media
