"""The one way the core sends a request to a provider, whatever the API or the mode.

Chat (core.providers.upstream.HttpUpstream), embeddings (core.providers.embeddings_sender) and the
Anthropic passthrough (core.api.messages.passthrough) all hand a built UpstreamRequest to a
provider's Transport, built once at start-up. It owns everything between the pure build and the
pure parse:

- signing: the adapter's signer, a separate step after the build; a signed URL goes out byte for
  byte as signed (`URL(..., encoded=True)`), since yarl would otherwise re-normalise it (e.g.
  `%3A` -> `:`) and break the signature;
- the connect and total timeouts (`aiohttp.ClientTimeout`), and for streamed bodies a bound on
  every single read (`BodyLimits.idle_timeout_s`: a stream that stalls mid-way ends with a
  TIMEOUT error, never hangs until the total timeout) and a minimum throughput after the first
  byte (`BodyLimits.min_bytes` in every `window_s`: a stream that drips a byte at a time is not
  idle, but must not hold a connection until the total timeout either). Every timeout is an
  UpstreamTimeout naming its clock (`timeout_connect`, `timeout_idle`, ...);
- a cap on whole answers (`BodyLimits.max_response_bytes`, Content-Length checked before any
  byte is read): eight 50 MB answers at once must not take the core past 500 MB, so a bigger
  one closes its connection and fails over as ResponseTooLarge. Streams are capped per event by
  their decoder, not here;
- transport failures (refused, reset, cut, timed out) as ProviderErrors with a failure class, so
  failover treats every API alike without knowing about sockets;
- upstream HTTP errors (status >= 400): parsed by the caller's parser (the adapter's, the
  embeddings translator's, or the passthrough's) and scrubbed here (core.providers.scrub.sanitize)
  with the target's keys, before anyone can show them to a tenant.

Every request carries the W3C `traceparent` of the attempt (core.observe.tracing.OUTBOUND: the
attempt span's when the request is traced, else the one the core received), added after
signing: no signer signs it, and a provider that ignores it ignores it.

Two modes: `fetch` (the whole answer: chat and passthrough without streaming, embeddings) and
`open` (an UpstreamBody read chunk by chunk: every stream, translated or relayed as bytes). The
first-byte and non-streaming deadlines are the dispatcher's (core.resilience.dispatch), around
these calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp
from yarl import URL

from core.observe.tracing import OUTBOUND
from core.providers.adapters.base import (
    ProviderError,
    RequestSigner,
    StreamEvent,
    Target,
    UpstreamRequest,
)
from core.providers.scrub import sanitize
from core.resilience.retry import ResponseTooLarge, UpstreamTimeout
from core.wire.sse import SSEDecoder
from shared.errors import FailureClass

# Status, lower-cased headers and body of an upstream error -> the error, unscrubbed.
ErrorParser = Callable[[int, Mapping[str, str], bytes], ProviderError]
# A whole answer: its headers (case-insensitive) and its body.
Reply = tuple[Mapping[str, str], bytes]
# What a failed send or read raises, before it is mapped.
TRANSPORT_ERRORS = (TimeoutError, aiohttp.ClientError)


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """How long and how much the core reads from one upstream answer (core.resilience's
    stream_idle_timeout, stream_min_bytes and stream_throughput_window; core.max_response_bytes).
    None switches a bound off."""

    idle_timeout_s: float | None = None
    min_bytes: int = 0
    window_s: float | None = None
    max_response_bytes: int | None = None


def transport_error(exc: BaseException) -> ProviderError:
    """A socket-level failure as a ProviderError: timeouts are TIMEOUT (named: connect, or the
    provider's total), the rest TRANSIENT, so both fail over; the messages are the gateway's
    own (nothing of the peer's is quoted)."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamTimeout(kind="connect")
    if isinstance(exc, asyncio.TimeoutError):
        return UpstreamTimeout(kind="total")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ProviderError(
            502, "could not connect to the upstream provider", FailureClass.TRANSIENT
        )
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return ProviderError(
            502, "the upstream provider closed the connection", FailureClass.TRANSIENT
        )
    return ProviderError(502, "upstream provider request failed", FailureClass.TRANSIENT)


async def _read_whole(response: aiohttp.ClientResponse, cap: int | None) -> bytes:
    """The whole body, at most `cap` bytes (Content-Length is believed first, so an announced
    giant is refused before a byte is read); the connection is released whatever happens, and
    closed when the body was not read to its end. A cut is a transport error."""
    chunks: list[bytes] = []
    size = 0
    try:
        if cap is not None and (response.content_length or 0) > cap:
            raise ResponseTooLarge()
        while chunk := await response.content.readany():
            size += len(chunk)
            if cap is not None and size > cap:
                raise ResponseTooLarge()
            chunks.append(chunk)
    except ResponseTooLarge:
        response.close()
        raise
    except TRANSPORT_ERRORS as exc:
        raise transport_error(exc) from None
    finally:
        response.release()
    return b"".join(chunks)


def _failed(
    response: aiohttp.ClientResponse, body: bytes, target: Target, parse_error: ErrorParser
) -> ProviderError:
    lowered = {k.lower(): v for k, v in response.headers.items()}
    return sanitize(parse_error(response.status, lowered, body), target)


class Throughput:
    """At least `min_bytes` in every `window_s` after the first byte. A reasoning model that
    thinks for minutes while sending keep-alive pings passes (pings are bytes); a stream that
    drips a byte now and then, never idle long enough for the idle timeout, does not."""

    __slots__ = ("_got", "_min_bytes", "_window_end", "_window_s")

    def __init__(self, min_bytes: int, window_s: float | None) -> None:
        self._min_bytes = min_bytes
        self._window_s = window_s if min_bytes > 0 else None
        self._window_end: float | None = None  # None until the first byte
        self._got = 0

    def time_left(self, now: float) -> float | None:
        """Seconds before the current window ends short of its minimum; None when nothing is
        owed (no guard, no first byte yet, or the minimum already met). Starts the next window
        when one has ended with its minimum met; raises UpstreamTimeout when it ended short."""
        if self._window_s is None or self._window_end is None:
            return None
        if now >= self._window_end:
            if self._got < self._min_bytes:
                raise UpstreamTimeout(kind="throughput")
            self._window_end, self._got = now + self._window_s, 0
        return None if self._got >= self._min_bytes else self._window_end - now

    def count(self, size: int, now: float) -> None:
        if self._window_s is None or not size:
            return
        if self._window_end is None:
            self._window_end = now + self._window_s  # the clock starts after the first byte
        else:
            self._got += size


class UpstreamBody:
    """A response whose status said success, read as it arrives. The owner must end it with
    `release` (the connection goes back to the pool if the body was read to its end, and is
    closed otherwise) or `close` (always closed)."""

    __slots__ = ("_content", "_idle_s", "_response", "_throughput")

    def __init__(self, response: aiohttp.ClientResponse, limits: BodyLimits | None = None):
        limits = limits or BodyLimits()
        self._response = response
        self._content = response.content
        self._idle_s = limits.idle_timeout_s
        self._throughput = Throughput(limits.min_bytes, limits.window_s)

    async def read(self) -> bytes:
        """The next bytes the upstream sent, b"" at the end. Each read has its own bound: a
        stream that stalls mid-way (idle) or trickles (throughput) must end with an error, not
        hang until the total timeout. Raises ProviderError (an UpstreamTimeout naming the clock
        that fired, else TRANSIENT)."""
        owed_s = self._throughput.time_left(time.monotonic())
        by_throughput = owed_s is not None and (self._idle_s is None or owed_s < self._idle_s)
        bound = asyncio.timeout(owed_s if by_throughput else self._idle_s)
        try:
            async with bound:
                data = await self._content.readany()
        except TRANSPORT_ERRORS as exc:
            if not bound.expired():
                raise transport_error(exc) from None
            raise UpstreamTimeout(kind="throughput" if by_throughput else "idle") from None
        self._throughput.count(len(data), time.monotonic())
        return data

    async def first_events(self, decoder: SSEDecoder) -> list[StreamEvent]:
        """Reads until `decoder` has a whole event: what a relayed stream holds before its
        first byte goes out, so a failure up to then can still fail over. Raises ProviderError
        (TRANSIENT) when the upstream ends without one."""
        while True:
            raw = await self.read()
            events = decoder.feed(raw) if raw else decoder.finish()
            if events:
                return events
            if not raw:
                raise ProviderError(
                    502,
                    "the upstream closed the stream before sending an event",
                    FailureClass.TRANSIENT,
                )

    def release(self) -> None:
        self._response.release()

    def close(self) -> None:
        self._response.close()


class Transport:
    """One per configured HTTP provider, built at start-up: the session, the provider's
    timeouts, its signer (or None) and the bounds on reading an answer."""

    __slots__ = ("_limits", "_session", "_signer", "_timeout")

    def __init__(
        self,
        session: Callable[[], aiohttp.ClientSession],
        timeout: aiohttp.ClientTimeout,
        signer: RequestSigner | None = None,
        limits: BodyLimits | None = None,
    ) -> None:
        self._session = session
        self._timeout = timeout
        self._signer = signer
        self._limits = limits or BodyLimits()

    async def fetch(
        self, request: UpstreamRequest, target: Target, parse_error: ErrorParser
    ) -> Reply:
        """The whole answer of a successful call; any failure raises a scrubbed ProviderError."""
        response = await self._send(request)
        body = await _read_whole(response, self._limits.max_response_bytes)
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
            return UpstreamBody(response, self._limits)
        body = await _read_whole(response, self._limits.max_response_bytes)
        raise _failed(response, body, target, parse_error)

    async def _send(self, request: UpstreamRequest) -> aiohttp.ClientResponse:
        url: str | URL = request.url
        if self._signer is not None:
            request = await self._signer.sign(request)
            url = URL(request.url, encoded=True)  # byte for byte as signed
        headers = request.headers
        traceparent = OUTBOUND.get()
        if traceparent is not None:
            headers = {**headers, "traceparent": traceparent}
        try:
            return await self._session().request(
                request.method,
                url,
                data=request.body if request.stream is None else request.stream.open(),
                headers=headers,
                timeout=self._timeout,
            )
        except TRANSPORT_ERRORS as exc:
            raise transport_error(exc) from None
