"""Sends an adapter's request over the process-wide aiohttp session.

This is the only place the core talks to providers. Transport failures become ProviderErrors
with a failure class, so the caller can fail over without knowing about sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Any, Protocol

import aiohttp
from yarl import URL

from core.adapters.base import (
    JSON,
    Adapter,
    Capabilities,
    ProviderError,
    RequestSigner,
    Target,
    UpstreamRequest,
)
from core.scrub import sanitize
from shared.errors import FailureClass

log = logging.getLogger("interlock.core")

# What a translator raises when a client payload has a shape it did not expect.
TRANSLATION_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError)


@contextlib.contextmanager
def translating(label: str) -> Iterator[None]:
    """Turns a translator's crash on a client payload into a 400, the one place it can happen.

    Validation (core.validate) is the root defence: every shape an adapter relies on is
    checked there with the field named. This is the backstop for a shape validation missed.
    Trade-off: such a crash is usually a gap in our validation or a bug in an adapter, yet it
    was triggered by this client's input and the same input fails the same way every time, so
    the client gets a 400 `invalid_request` (not a 5xx that would page operators, count
    against the target's health, or invite the client to retry), while the operators get the
    full traceback in the log to close the gap. A CLIENT_ERROR never fails over or retries.
    """
    try:
        yield
    except TRANSLATION_ERRORS:
        log.exception("could not translate a request for %s (client input)", label)
        raise ProviderError(
            400,
            f"the request could not be translated for {label}; "
            "check the types and shapes of its fields",
            FailureClass.CLIENT_ERROR,
            code="invalid_request",
        ) from None


class Upstream(Protocol):
    """Anything that can serve a canonical request: an HTTP provider or the in-process mock."""

    def capabilities(self, target: Target) -> Capabilities: ...

    async def complete(self, canonical: JSON, target: Target) -> JSON: ...

    def stream(self, canonical: JSON, target: Target) -> AsyncIterator[JSON]:
        """Raises ProviderError before the first chunk if the call fails early."""
        ...


def transport_error(exc: BaseException) -> ProviderError:
    if isinstance(exc, asyncio.TimeoutError):
        return ProviderError(504, "upstream provider timed out", FailureClass.TIMEOUT)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ProviderError(
            502, "could not connect to the upstream provider", FailureClass.TRANSIENT
        )
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return ProviderError(
            502, "the upstream provider closed the connection", FailureClass.TRANSIENT
        )
    return ProviderError(502, "upstream provider request failed", FailureClass.TRANSIENT)


def _stalled() -> ProviderError:
    return ProviderError(504, "the upstream stream stalled (idle timeout)", FailureClass.TIMEOUT)


class HttpUpstream:
    def __init__(
        self,
        adapter: Adapter,
        session_getter: Callable[[], aiohttp.ClientSession],
        timeout: aiohttp.ClientTimeout,
        signer: RequestSigner | None = None,
        idle_timeout_s: float | None = None,
    ) -> None:
        self.adapter = adapter
        self._session = session_getter
        self._timeout = timeout
        self._signer = signer
        self._idle_s = idle_timeout_s

    def capabilities(self, target: Target) -> Capabilities:
        return self.adapter.capabilities(target)

    async def _build(self, canonical: JSON, target: Target) -> UpstreamRequest:
        with translating(target.label):
            request = self.adapter.build_request(canonical, target)
        return await self._signer.sign(request) if self._signer is not None else request

    def _url(self, request: UpstreamRequest) -> str | URL:
        # A signed URL must go out byte for byte as signed: stop yarl re-normalising it.
        return URL(request.url, encoded=True) if self._signer is not None else request.url

    def _send(self, request: UpstreamRequest) -> Any:
        return self._session().request(
            request.method,
            self._url(request),
            data=request.body,
            headers=request.headers,
            timeout=self._timeout,
        )

    async def complete(self, canonical: JSON, target: Target) -> JSON:
        request = await self._build(canonical, target)
        try:
            async with self._send(request) as response:
                body = await response.read()
                status = response.status
                headers = response.headers
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise transport_error(exc) from None
        if status >= 400:
            lowered = {k.lower(): v for k, v in headers.items()}
            raise sanitize(self.adapter.parse_error(status, lowered, body), target)
        return self.adapter.parse_response(body, target)

    async def stream(self, canonical: JSON, target: Target) -> AsyncIterator[JSON]:
        """Every upstream error, before the first chunk or as an in-stream error event, leaves
        here scrubbed (core.scrub): the adapters' parsers stay pure."""
        chunks = self._stream(canonical, target)
        try:
            async for chunk in chunks:
                yield chunk
        except ProviderError as error:
            raise sanitize(error, target) from None
        finally:
            await chunks.aclose()  # at once, not at garbage collection: it holds a connection

    async def _stream(self, canonical: JSON, target: Target) -> AsyncGenerator[JSON, None]:
        request = await self._build(canonical, target)
        with translating(target.label):
            parser = self.adapter.stream_parser(canonical, target)
        decoder = self.adapter.decoder()
        try:
            async with self._send(request) as response:
                if response.status >= 400:
                    body = await response.read()
                    lowered = {k.lower(): v for k, v in response.headers.items()}
                    raise self.adapter.parse_error(response.status, lowered, body)
                content = response.content
                while True:
                    # Each read has its own bound: a stream that stalls mid-way must end
                    # with an error event, not hang until the total timeout.
                    try:
                        async with asyncio.timeout(self._idle_s):
                            raw = await content.readany()
                    except TimeoutError:
                        raise _stalled() from None
                    if not raw:
                        break
                    for event in decoder.feed(raw):
                        for chunk in parser.feed(event):
                            yield chunk
                for event in decoder.finish():
                    for chunk in parser.feed(event):
                        yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise transport_error(exc) from None
        for chunk in parser.finish():
            yield chunk
