"""Fetching remote images for providers that only accept bytes (Bedrock, Gemini, Ollama...).

A tenant-supplied URL is an SSRF vector: the gateway sits inside the operator's network. The
URL is parsed once with yarl, exactly as aiohttp will use it (IDNA/NFKC already applied, so
`①②⑦.0.0.1` is seen as the 127.0.0.1 it becomes), and refused unless its host is plain ASCII
letters-digits-hyphens or a canonical IP literal. The real guard is in core.images.netguard: every
address the connector is about to connect to, literal or resolved, passes the address policy in
the socket factory, so no spelling, DNS answer or rebinding can reach a non-public peer.
Redirects are followed by hand so each hop is parsed and connected the same way.

The fetcher must not be an oracle or a port scanner: every refusal and every failure (bad URL,
non-public address, DNS failure, refused connection, timeout, bad status, wrong type, too large,
too many redirects) gives the tenant the same 400; the real reason goes to the operator's log.

Resources are capped per request (image count, refused before any fetch; total bytes, counted
while streaming; identical URLs fetched once; a few fetches at a time) and per process (a bounded
number of fetches in flight across all tenants), so a small request cannot make the core
download or send upstream an unbounded amount.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from core.images.netguard import GuardedSockets
from core.images.url import Unusable, loggable, parse_image_url
from core.providers.adapters.base import JSON
from shared.config import CoreConfig
from shared.errors import GatewayError

log = logging.getLogger("interlock.core.images")

ALLOWED_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
# Images are compressed already: ask for them as they are (decoded bytes count against the caps
# either way, should a server compress regardless).
_HEADERS = {
    "accept": ", ".join(sorted(ALLOWED_TYPES)),
    "accept-encoding": "identity",
    "user-agent": "interlock-image-fetcher",
}


@dataclass(frozen=True, slots=True)
class ImageLimits:
    max_bytes: int = 5 * 1024 * 1024  # one image
    max_total_bytes: int = 15 * 1024 * 1024  # all images of one request, as sent upstream
    max_count: int = 16  # remote image parts in one request
    timeout_s: float = 10.0  # one image, all redirect hops included
    per_request: int = 4  # fetches in flight for one request
    process_wide: int = 32  # fetches in flight across all requests of this process


class _OverBudget(Exception):
    """The request's images together exceed max_total_bytes."""


class _Budget:
    """Bytes the rest of this request's images may still add (counted per occurrence)."""

    __slots__ = ("left",)

    def __init__(self, total: int) -> None:
        self.left = total

    def spend(self, amount: int) -> None:
        self.left -= amount
        if self.left < 0:
            raise _OverBudget


class ImageFetcher:
    def __init__(
        self,
        limits: ImageLimits | None = None,
        *,
        allow_private: bool = False,
        allow_hosts: tuple[tuple[str, int], ...] = (),
    ) -> None:
        self.limits = limits or ImageLimits()
        self._sockets = GuardedSockets(allow_hosts, allow_private)
        self._slots = asyncio.BoundedSemaphore(self.limits.process_wide)
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_config(cls, core: CoreConfig) -> ImageFetcher:
        limits = ImageLimits(
            core.image_max_bytes,
            core.image_max_total_bytes,
            core.image_max_count,
            core.image_fetch_timeout_s,
            core.image_fetch_concurrency,
            core.image_max_concurrent_fetches,
        )
        return cls(
            limits,
            allow_private=core.image_allow_private_networks,
            allow_hosts=core.image_allow_hosts,
        )

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            socket_factory=self._sockets, limit=self.limits.process_wide, use_dns_cache=False
        )
        # No cookie jar: one tenant's image host must not set cookies another tenant's
        # fetch would send.
        self._session = aiohttp.ClientSession(
            connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar()
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def inline(self, payload: JSON) -> JSON:
        """A copy of the payload with every remote image URL replaced by a data: URL."""
        messages = payload.get("messages") or []
        jobs = _remote_images(messages)
        if not jobs:
            return payload
        if len(jobs) > self.limits.max_count:  # before a single byte is fetched
            raise GatewayError(
                400,
                f"at most {self.limits.max_count} remote image URLs are fetched per request",
                param=_param(*jobs[self.limits.max_count][:2]),
                code="too_many_images",
            )
        fetched = await self._fetch_distinct(jobs)
        new_messages = list(messages)
        for i, j, url in jobs:
            message = dict(new_messages[i])
            content = list(message["content"])
            part = dict(content[j])
            part["image_url"] = {**part["image_url"], "url": fetched[url]}
            content[j] = part
            message["content"] = content
            new_messages[i] = message
        return {**payload, "messages": new_messages}

    async def _fetch_distinct(self, jobs: list[tuple[int, int, str]]) -> dict[str, str]:
        """Each distinct URL once, a few at a time, its bytes counted once per occurrence;
        the first failure cancels the rest."""
        first: dict[str, tuple[int, int]] = {}
        weight: dict[str, int] = {}
        for i, j, url in jobs:
            first.setdefault(url, (i, j))
            weight[url] = weight.get(url, 0) + 1
        budget = _Budget(self.limits.max_total_bytes)
        gate = asyncio.Semaphore(self.limits.per_request)

        async def one(url: str) -> str:
            async with gate:
                return await self.fetch(url, _param(*first[url]), budget, weight[url])

        try:
            async with asyncio.TaskGroup() as group:
                tasks = {url: group.create_task(one(url)) for url in first}
        except BaseExceptionGroup as failed:
            raise _first_leaf(failed) from None
        return {url: task.result() for url, task in tasks.items()}

    async def fetch(
        self, url: str, param: str, budget: _Budget | None = None, weight: int = 1
    ) -> str:
        """The image at `url` as a data: URL, or the uniform 400 naming `param`."""
        if self._session is None:
            raise GatewayError(503, "the gateway is starting up", code="not_ready")
        budget = budget or _Budget(self.limits.max_total_bytes)
        async with self._slot():
            try:
                async with asyncio.timeout(self.limits.timeout_s):
                    return await self._follow(self._session, url, budget, weight)
            except _OverBudget:
                log.warning(
                    "image refused for %s (%s): request total too large", param, loggable(url)
                )
                raise GatewayError(
                    400,
                    f"the remote images of this request add up to more than "
                    f"{self.limits.max_total_bytes} bytes",
                    param="messages",
                    code="images_too_large",
                ) from None
            except (Unusable, TimeoutError, aiohttp.ClientError, OSError, ValueError) as why:
                log.warning("image refused for %s (%s): %s", param, loggable(url), _reason(why))
                raise self._unusable(param) from None

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """A process-wide fetch slot, waited for at most one fetch timeout."""
        try:
            async with asyncio.timeout(self.limits.timeout_s):
                await self._slots.acquire()
        except TimeoutError:
            raise GatewayError(
                503,
                "the gateway is fetching too many images right now; retry shortly",
                code="image_fetch_busy",
                headers={"retry-after": "1"},
            ) from None
        try:
            yield
        finally:
            self._slots.release()

    async def _follow(
        self, session: aiohttp.ClientSession, url: str, budget: _Budget, weight: int
    ) -> str:
        current = parse_image_url(url)
        for _ in range(MAX_REDIRECTS + 1):
            async with session.get(
                current, allow_redirects=False, headers=_HEADERS, timeout=aiohttp.ClientTimeout()
            ) as response:
                if response.status in _REDIRECTS:
                    location = response.headers.get("location")
                    if not location:
                        raise Unusable("redirect without a location")
                    current = parse_image_url(current.join(URL(location)))
                    continue
                if response.status != 200:
                    raise Unusable(f"the server answered HTTP {response.status}")
                return await self._read(response, budget, weight)
        raise Unusable("too many redirects")

    async def _read(self, response: aiohttp.ClientResponse, budget: _Budget, weight: int) -> str:
        media_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type not in ALLOWED_TYPES:
            raise Unusable(f"unsupported content type {media_type[:64] or 'unknown'}")
        limit = self.limits.max_bytes
        declared = response.content_length
        if declared is not None and declared > limit:
            raise Unusable(f"declared {declared} bytes, more than {limit}")
        if declared is not None and declared * weight > budget.left:
            raise _OverBudget
        body = bytearray()
        async for piece in response.content.iter_chunked(_CHUNK):
            body += piece
            if len(body) > limit:
                raise Unusable(f"larger than {limit} bytes")
            budget.spend(len(piece) * weight)
        sniffed = sniff(body)
        if sniffed is None:  # a mislabelled body would only fail upstream, on a shared target
            raise Unusable(f"the body is not a PNG, JPEG, GIF or WebP image (sent as {media_type})")
        return f"data:{sniffed};base64,{base64.b64encode(bytes(body)).decode()}"

    def _unusable(self, param: str) -> GatewayError:
        """The one answer for every refusal and failure, whatever happened (no oracle)."""
        return GatewayError(
            400,
            f"the image at {param} could not be used: it must be an http(s) URL of a publicly "
            f"reachable PNG, JPEG, GIF or WebP image of at most {self.limits.max_bytes} bytes",
            param=param,
            code="invalid_image_url",
        )


def sniff(body: bytes | bytearray) -> str | None:
    """The image type the bytes really are (their signature), or None."""
    if body.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if body.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if body.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if body[:4] == b"RIFF" and body[8:12] == b"WEBP":
        return "image/webp"
    return None


def _param(i: int, j: int) -> str:
    return f"messages[{i}].content[{j}].image_url.url"


def _reason(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    return f"{type(error).__name__}: {error}"[:500]


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real error of a task group (GatewayErrors come out as they are)."""
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf


def _remote_images(messages: Any) -> list[tuple[int, int, str]]:
    """(message index, part index, url) of every remote image part, in request order."""
    jobs: list[tuple[int, int, str]] = []
    if not isinstance(messages, list):
        return jobs
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            url = _remote_image_url(part)
            if url is not None:
                jobs.append((i, j, url))
    return jobs


def _remote_image_url(part: Any) -> str | None:
    if not isinstance(part, dict) or part.get("type") != "image_url":
        return None
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else None
    if isinstance(url, str) and url[:8].lower().startswith(("http://", "https://")):
        return url
    return None
