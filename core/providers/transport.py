"""The one way the core sends a request to a provider, whatever the API or the mode.

Chat (core.providers.upstream.HttpUpstream), embeddings (core.providers.embeddings_sender) and the
Anthropic passthrough (core.api.messages.passthrough) all hand a built UpstreamRequest to a
provider's Transport, built once at start-up. It owns everything between the pure build and the
pure parse:

- sending: through the core's one ProviderClient (core.providers.client: shared.h1 with a
  bound on connections in use, verified TLS, gzip/deflate answers inflated as they are read);
- signing: the adapter's signer, a separate step after the build; every URL goes out byte for
  byte as built and signed (shared.h1 sends the request target verbatim: nothing re-normalises
  it, e.g. `%3A` -> `:`, and breaks a signature);
- the connect and total timeouts (`Timeouts`: the total bounds the whole exchange, from
  sending to the answer's last byte), and for streamed bodies a bound on
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
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from core.observe.tracing import OUTBOUND
from core.providers.adapters.base import (
    ProviderError,
    RequestSigner,
    StreamEvent,
    Target,
    UpstreamRequest,
)
from core.providers.client import Answer, ProviderClient, outgoing
from core.providers.scrub import sanitize
from core.resilience.retry import ResponseTooLarge, TimeoutKind, UpstreamTimeout
from core.wire.sse import SSEDecoder
from shared.errors import FailureClass
from shared.h1 import Body, ConnectFailed, Disconnected, H1Error, H1Timeout, ProtocolError
from shared.h1.client import Sized

# Status, lower-cased headers and body of an upstream error -> the error, unscrubbed.
ErrorParser = Callable[[int, Mapping[str, str], bytes], ProviderError]
# A whole answer: its headers (case-insensitive) and its body.
Reply = tuple[Mapping[str, str], bytes]
# What a failed send or read raises, before it is mapped.
TRANSPORT_ERRORS = (TimeoutError, H1Error, zlib.error)
T = TypeVar("T")


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
    if isinstance(exc, H1Timeout) and exc.kind == "connect":
        return UpstreamTimeout(kind="connect")
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(kind="total")
    if isinstance(exc, ConnectFailed):
        return ProviderError(
            502, "could not connect to the upstream provider", FailureClass.TRANSIENT
        )
    if isinstance(exc, Disconnected | ProtocolError | zlib.error):
        return ProviderError(
            502, "the upstream provider closed the connection", FailureClass.TRANSIENT
        )
    return ProviderError(502, "upstream provider request failed", FailureClass.TRANSIENT)


async def _read_whole(answer: Answer, cap: int | None) -> bytes:
    """The whole body, at most `cap` bytes (Content-Length is believed first, so an announced
    giant is refused before a byte is read); the connection is released whatever happens, and
    closed when the body was not read to its end. A cut is a transport error. The caller's
    clock bounds it (`_bounded`)."""
    chunks: list[bytes] = []
    size = 0
    try:
        if cap is not None and (answer.content_length or 0) > cap:
            raise ResponseTooLarge()
        while chunk := await answer.chunk():
            size += len(chunk)
            if cap is not None and size > cap:
                raise ResponseTooLarge()
            chunks.append(chunk)
    except ResponseTooLarge:
        answer.close()
        raise
    except TRANSPORT_ERRORS as exc:
        raise transport_error(exc) from None
    finally:
        answer.release()
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _bounded(work: Awaitable[T], deadline: float | None) -> T:
    """`work` by `deadline` (the provider's total timeout; None: unbounded), its expiry an
    UpstreamTimeout ("total"): one clock for what it covers, however many steps that takes
    (a clock costs a timer and a task look-up each time it starts)."""
    if deadline is None:
        return await work
    try:
        async with asyncio.timeout_at(deadline):
            return await work
    except TimeoutError:
        raise UpstreamTimeout(kind="total") from None


def _failed(answer: Answer, body: bytes, target: Target, parse_error: ErrorParser) -> ProviderError:
    return sanitize(parse_error(answer.status, answer.headers.fields, body), target)


def _streamed(request: UpstreamRequest) -> Body:
    """A BodySource's bytes: as is under the Content-Length its headers carry (a spooled
    upload goes out sized, as it did with aiohttp), else chunked."""
    assert request.stream is not None
    source = request.stream.open()
    for name, value in request.headers.items():
        if name.lower() == "content-length" and value.isascii() and value.isdigit():
            return Sized(source, int(value))
    return source


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

    __slots__ = ("_answer", "_deadline", "_idle_s", "_throughput")

    def __init__(
        self, answer: Answer, limits: BodyLimits | None = None, deadline: float | None = None
    ) -> None:
        limits = limits or BodyLimits()
        self._answer = answer
        self._deadline = deadline
        self._idle_s = limits.idle_timeout_s
        self._throughput = Throughput(limits.min_bytes, limits.window_s)

    async def read(self) -> bytes:
        """The next bytes the upstream sent, b"" at the end. Each read has its own bound: a
        stream that stalls mid-way (idle) or trickles (throughput) must end with an error, not
        hang until the total timeout (which bounds the whole answer). Raises ProviderError (an
        UpstreamTimeout naming the clock that fired, else TRANSIENT)."""
        clock = asyncio.get_running_loop().time  # the clock asyncio.timeout_at reads
        kind, when = self._bound(clock())
        bound = asyncio.timeout_at(when)
        try:
            async with bound:
                data = await self._answer.chunk()
        except TRANSPORT_ERRORS as exc:
            if not bound.expired():
                raise transport_error(exc) from None
            raise UpstreamTimeout(kind=kind) from None
        self._throughput.count(len(data), clock())
        return data

    def _bound(self, now: float) -> tuple[TimeoutKind, float | None]:
        """The clock that ends this read first, and when: idle, throughput or total."""
        owed_s = self._throughput.time_left(now)
        idle_s = self._idle_s
        kind: TimeoutKind = "idle"
        when = None if idle_s is None else now + idle_s
        if owed_s is not None and (idle_s is None or owed_s < idle_s):
            kind, when = "throughput", now + owed_s
        deadline = self._deadline
        if deadline is not None and (when is None or deadline <= when):
            kind, when = "total", deadline
        return kind, when

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
        self._answer.release()

    def close(self) -> None:
        self._answer.close()


@dataclass(frozen=True, slots=True)
class Timeouts:
    """A provider's clocks (core/providers/provider.py): connecting, and the whole exchange
    from sending to the answer's last byte (a backstop behind the dispatcher's clocks)."""

    total_s: float | None
    connect_s: float | None = None


class Transport:
    """One per configured HTTP provider, built at start-up: the client, the provider's
    timeouts, its signer (or None) and the bounds on reading an answer."""

    __slots__ = ("_client", "_limits", "_signer", "_timeouts")

    def __init__(
        self,
        client: Callable[[], ProviderClient],
        timeouts: Timeouts,
        signer: RequestSigner | None = None,
        limits: BodyLimits | None = None,
    ) -> None:
        self._client = client
        self._timeouts = timeouts
        self._signer = signer
        self._limits = limits or BodyLimits()

    async def fetch(
        self, request: UpstreamRequest, target: Target, parse_error: ErrorParser
    ) -> Reply:
        """The whole answer of a successful call; any failure raises a scrubbed ProviderError.
        One clock (the total timeout) covers the send and the read."""
        answer, body = await _bounded(self._exchange(request), self._deadline())
        if answer.status >= 400:
            raise _failed(answer, body, target, parse_error)
        return answer.headers, body

    async def _exchange(self, request: UpstreamRequest) -> tuple[Answer, bytes]:
        answer = await self._request(request)
        return answer, await _read_whole(answer, self._limits.max_response_bytes)

    async def open(
        self, request: UpstreamRequest, target: Target, parse_error: ErrorParser
    ) -> UpstreamBody:
        """The body of a successful call, once its headers are in; an error status is read
        whole and raised as a scrubbed ProviderError, like `fetch`. The total timeout bounds
        the head here, then every read of the body (UpstreamBody)."""
        deadline = self._deadline()
        answer = await _bounded(self._request(request), deadline)
        if answer.status < 400:
            return UpstreamBody(answer, self._limits, deadline)
        body = await _bounded(_read_whole(answer, self._limits.max_response_bytes), deadline)
        raise _failed(answer, body, target, parse_error)

    def _deadline(self) -> float | None:
        """When the whole exchange must be over, on the loop's clock (asyncio.timeout_at's)."""
        total_s = self._timeouts.total_s
        return None if total_s is None else asyncio.get_running_loop().time() + total_s

    async def _request(self, request: UpstreamRequest) -> Answer:
        """The answer's head, once it is in (unbounded: the caller's clock bounds it)."""
        if self._signer is not None:
            request = await self._signer.sign(request)
        headers = outgoing(request.headers, OUTBOUND.get())
        body = request.body if request.stream is None else _streamed(request)
        try:
            return await self._client().request(
                request.method, request.url, headers, body, self._timeouts.connect_s
            )
        except (*TRANSPORT_ERRORS, ValueError) as exc:  # ValueError: a URL h1 cannot send
            raise transport_error(exc) from None
