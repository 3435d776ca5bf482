"""The one way the core sends a request to a provider, whatever the API or the mode.

Chat (core.providers.upstream.HttpUpstream), embeddings (core.providers.embeddings_sender) and the
Anthropic passthrough (core.api.messages.passthrough) all hand a built UpstreamRequest to a
provider's Transport, built once at start-up. It owns everything between the pure build and the
pure parse:

- signing: the adapter's signer, a separate step after the build; a signed URL goes out byte for
  byte as signed (`URL(..., encoded=True)`), since yarl would otherwise re-normalise it (e.g.
  `%3A` -> `:`) and break the signature;
- the connect and total timeouts (`aiohttp.ClientTimeout`), and for streamed bodies a bound on
  every single read (`idle_timeout_s`): a stream that stalls mid-way ends with a TIMEOUT error,
  never hangs until the total timeout;
- transport failures (refused, reset, cut, timed out) as ProviderErrors with a failure class, so
  failover treats every API alike without knowing about sockets;
- upstream HTTP errors (status >= 400): parsed by the caller's parser (the adapter's, the
  embeddings translator's, or the passthrough's) and scrubbed here (core.providers.scrub.sanitize)
  with the target's keys, before anyone can show them to a tenant.

Two modes: `fetch` (the whole answer: chat and passthrough without streaming, embeddings) and
`open` (an UpstreamBody read chunk by chunk: every stream, translated or relayed as bytes). The
first-byte and non-streaming deadlines are the dispatcher's (core.resilience.dispatch), around
these calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import aiohttp
from yarl import URL

from core.providers.adapters.base import ProviderError, RequestSigner, Target, UpstreamRequest
from core.providers.scrub import sanitize
from shared.errors import FailureClass

# Status, lower-cased headers and body of an upstream error -> the error, unscrubbed.
ErrorParser = Callable[[int, Mapping[str, str], bytes], ProviderError]
# A whole answer: its headers (case-insensitive) and its body.
Reply = tuple[Mapping[str, str], bytes]
# What a failed send or read raises, before it is mapped.
TRANSPORT_ERRORS = (TimeoutError, aiohttp.ClientError)


def transport_error(exc: BaseException) -> ProviderError:
    """A socket-level failure as a ProviderError: timeouts are TIMEOUT, the rest TRANSIENT, so
    both fail over; the messages are the gateway's own (nothing of the peer's is quoted)."""
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


def stalled() -> ProviderError:
    return ProviderError(504, "the upstream stream stalled (idle timeout)", FailureClass.TIMEOUT)


async def _read_whole(response: aiohttp.ClientResponse) -> bytes:
    """The whole body, the connection released whatever happens; a cut is a transport error."""
    try:
        return await response.read()
    except TRANSPORT_ERRORS as exc:
        raise transport_error(exc) from None
    finally:
        response.release()


def _failed(
    response: aiohttp.ClientResponse, body: bytes, target: Target, parse_error: ErrorParser
) -> ProviderError:
    lowered = {k.lower(): v for k, v in response.headers.items()}
    return sanitize(parse_error(response.status, lowered, body), target)


class UpstreamBody:
    """A response whose status said success, read as it arrives. The owner must end it with
    `release` (the connection goes back to the pool if the body was read to its end, and is
    closed otherwise) or `close` (always closed)."""

    __slots__ = ("_content", "_idle_s", "_response")

    def __init__(self, response: aiohttp.ClientResponse, idle_timeout_s: float | None = None):
        self._response = response
        self._content = response.content
        self._idle_s = idle_timeout_s

    async def read(self) -> bytes:
        """The next bytes the upstream sent, b"" at the end. Each read has its own bound: a
        stream that stalls mid-way must end with an error, not hang until the total timeout.
        Raises ProviderError (TIMEOUT when stalled or past the total timeout, else TRANSIENT)."""
        bound = asyncio.timeout(self._idle_s)
        try:
            async with bound:
                return await self._content.readany()
        except TRANSPORT_ERRORS as exc:
            raise (stalled() if bound.expired() else transport_error(exc)) from None

    def release(self) -> None:
        self._response.release()

    def close(self) -> None:
        self._response.close()


class Transport:
    """One per configured HTTP provider, built at start-up: the session, the provider's
    timeouts, its signer (or None) and the stream idle timeout."""

    __slots__ = ("_idle_s", "_session", "_signer", "_timeout")

    def __init__(
        self,
        session: Callable[[], aiohttp.ClientSession],
        timeout: aiohttp.ClientTimeout,
        signer: RequestSigner | None = None,
        idle_timeout_s: float | None = None,
    ) -> None:
        self._session = session
        self._timeout = timeout
        self._signer = signer
        self._idle_s = idle_timeout_s

    async def fetch(
        self, request: UpstreamRequest, target: Target, parse_error: ErrorParser
    ) -> Reply:
        """The whole answer of a successful call; any failure raises a scrubbed ProviderError."""
        response = await self._send(request)
        body = await _read_whole(response)
        if response.status >= 400:
            raise _failed(response, body, target, parse_error)
        return response.headers, body

    async def open(
        self, request: UpstreamRequest, target: Target, parse_error: ErrorParser
    ) -> UpstreamBody:
        """The body of a successful call, once its headers are in; an error status is read
        whole and raised as a scrubbed ProviderError, like `fetch`."""
        response = await self._send(request)
        if response.status < 400:
            return UpstreamBody(response, self._idle_s)
        raise _failed(response, await _read_whole(response), target, parse_error)

    async def _send(self, request: UpstreamRequest) -> aiohttp.ClientResponse:
        url: str | URL = request.url
        if self._signer is not None:
            request = await self._signer.sign(request)
            url = URL(request.url, encoded=True)  # byte for byte as signed
        try:
            return await self._session().request(
                request.method,
                url,
                data=request.body,
                headers=request.headers,
                timeout=self._timeout,
            )
        except TRANSPORT_ERRORS as exc:
            raise transport_error(exc) from None
