"""Fetching remote images for providers that only accept bytes (Bedrock, Gemini).

A tenant-supplied URL is an SSRF vector: the gateway sits inside the operator's network. Every
address a name resolves to must be public, checked in the resolver that the connection itself
uses (so DNS rebinding between check and connect cannot slip through); literal IPs are checked
before the request; redirects are followed by hand so each hop is checked; size and time are
capped, and only image content types are accepted.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from core.adapters.base import JSON
from shared.errors import GatewayError

ALLOWED_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
MAX_REDIRECTS = 3


def _bad_image(param: str, why: str) -> GatewayError:
    return GatewayError(
        400, f"could not use the image at {param}: {why}", param=param, code="invalid_image_url"
    )


def address_allowed(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class GuardedResolver(AbstractResolver):
    """Resolves like the default resolver, then refuses any non-public address."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if not results or not all(address_allowed(r["host"]) for r in results):
            raise OSError(f"{host} resolves to a non-public address")
        return results

    async def close(self) -> None:
        await self._inner.close()


class ImageFetcher:
    def __init__(self, max_bytes: int, timeout_s: float, allow_private: bool) -> None:
        self.max_bytes = max_bytes
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.allow_private = allow_private
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        resolver: AbstractResolver = DefaultResolver() if self.allow_private else GuardedResolver()
        connector = aiohttp.TCPConnector(
            resolver=resolver, limit=64, ttl_dns_cache=None, use_dns_cache=False
        )
        self._session = aiohttp.ClientSession(connector=connector, trust_env=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def inline(self, payload: JSON) -> JSON:
        """A copy of the payload with every remote image URL replaced by a data: URL."""
        messages = payload.get("messages") or []
        jobs: list[tuple[int, int, str]] = []
        for i, message in enumerate(messages):
            content = message.get("content") if isinstance(message, dict) else None
            if not isinstance(content, list):
                continue
            for j, part in enumerate(content):
                url = _remote_image_url(part)
                if url is not None:
                    jobs.append((i, j, url))
        if not jobs:
            return payload
        fetched = await asyncio.gather(
            *(self.fetch(url, f"messages[{i}].content[{j}].image_url.url") for i, j, url in jobs)
        )
        new_messages = list(messages)
        for (i, j, _), data_url in zip(jobs, fetched, strict=True):
            message = dict(new_messages[i])
            content = list(message["content"])
            part = dict(content[j])
            part["image_url"] = {**part["image_url"], "url": data_url}
            content[j] = part
            message["content"] = content
            new_messages[i] = message
        return {**payload, "messages": new_messages}

    async def fetch(self, url: str, param: str) -> str:
        if self._session is None:
            raise GatewayError(503, "the gateway is starting up", code="not_ready")
        current = url
        try:
            for _ in range(MAX_REDIRECTS + 1):
                self._check_url(current, param)
                async with self._session.get(
                    current,
                    timeout=self.timeout,
                    allow_redirects=False,
                    headers={"accept": "image/*"},
                ) as response:
                    if response.status in (301, 302, 303, 307, 308):
                        location = response.headers.get("location")
                        if not location:
                            raise _bad_image(param, "redirect without a location")
                        current = urljoin(current, location)
                        continue
                    if response.status != 200:
                        raise _bad_image(param, f"the server answered HTTP {response.status}")
                    return await self._read(response, param)
        except TimeoutError:  # before ClientError: aiohttp's timeouts are both
            raise _bad_image(param, "fetching it took too long") from None
        except (aiohttp.ClientError, OSError):
            raise _bad_image(param, "it could not be fetched (only public addresses are)") from None
        raise _bad_image(param, "too many redirects")

    def _check_url(self, url: str, param: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _bad_image(param, "only http(s) URLs can be fetched")
        if parts.username or parts.password:
            raise _bad_image(param, "URLs with credentials are not fetched")
        if self.allow_private:
            return
        try:
            literal = ipaddress.ip_address(parts.hostname.strip("[]"))
        except ValueError:
            return  # a name: checked by the resolver at connect time
        if not address_allowed(str(literal)):
            raise _bad_image(param, "it points to a non-public address")

    async def _read(self, response: aiohttp.ClientResponse, param: str) -> str:
        media_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type not in ALLOWED_TYPES:
            raise _bad_image(param, f"unsupported content type {media_type or 'unknown'}")
        declared = response.content_length
        if declared is not None and declared > self.max_bytes:
            raise _bad_image(param, f"it is larger than {self.max_bytes} bytes")
        body = bytearray()
        async for piece in response.content.iter_chunked(65536):
            body += piece
            if len(body) > self.max_bytes:
                raise _bad_image(param, f"it is larger than {self.max_bytes} bytes")
        return f"data:{media_type};base64,{base64.b64encode(bytes(body)).decode()}"


def _remote_image_url(part: Any) -> str | None:
    if not isinstance(part, dict) or part.get("type") != "image_url":
        return None
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else None
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        return url
    return None
