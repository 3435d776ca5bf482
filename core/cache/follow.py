"""Request coalescing inside the response cache's stage (core.cache.stage): which requests
may share an upstream call, the leader's answer handed to its flight (core.cache.coalesce),
and a follower's answer read from it.

Who coalesces: requests the cache applies to (same tenant, same cache key: core.cache.key)
in the same mode (complete, or streamed with or without the usage chunk, so every follower
gets exactly the bytes its own request would have), unless they asked for several samples
(`n` > 1) or for a fresh answer (`Cache-Control: no-cache` or `no-store`). An explicit
temperature > 0 does not opt out: one sample answers every identical concurrent request, as a
cache hit would answer the same request a second later.

A follower costs what a hit costs: one request off the tenant's rate limits (rpm), no tokens,
no budget; its ledger record's outcome is `coalesced`, at zero cost, with the tokens it saved
kept apart. The leader is billed as any request. A leader that ends without an answer (an
upstream error, its own rate limit or budget) lets its followers run again (one of them
leads): those errors are the leader's own, not the answer's. A leader whose client leaves
while someone follows (here, or on another replica) keeps its call going for them: before
its answer started, its request runs on detached from its client (`detach`) and is cancelled
once the last follower has gone; mid-stream, its upstream stream is read on for them
(`_Feed`). Either way they get the whole answer from the one call, and its record carries it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from core.api.messages.stream import error_event
from core.cache.coalesce import CUT, DONE, OPEN, PENDING, RETRY, Flight
from core.cache.key import Directives
from core.limits.admission import admit
from core.limits.tenant import TenantLimiter
from core.observe import accounting
from core.observe.records import Records
from core.pipeline.exchange import SSE_HEADERS, Exchange
from core.resilience.dispatch import close
from core.spend.cost import Cost
from core.spend.quote import COST_FIELD, COST_HEADER
from core.spend.usage import UsageSplit
from shared.errors import GatewayError

AnyExchange = Exchange[Any, Any, Any]
CACHE_HEADER = "x-interlock-cache"
COALESCED = "coalesced"  # the ledger's and usage line's outcome of a follower
FREE = Cost(0, None)
_SHARED = ("x-interlock-provider", "x-interlock-model")  # what served it, told to followers
# The leader's price in a stream's final usage: a follower's says what it cost, nothing.
_PRICE = re.compile(rb'"' + COST_FIELD.encode() + rb'":"[0-9.]*"')
_FREE_PRICE = b'"' + COST_FIELD.encode() + b'":"' + FREE.dollars.encode() + b'"'


def eligible(x: AnyExchange, asked: Directives) -> bool:
    """Not for several samples, nor for a client that asked for a fresh answer."""
    n = x.payload.get("n")
    return not asked.no_cache and not asked.no_store and (n is None or n == 1)


def flight_key(key: str, x: AnyExchange) -> str:
    """The cache key and the mode: a follower gets the leader's bytes as they are."""
    if not x.request.stream:
        mode = "c"
    else:
        mode = "su" if getattr(x.request, "include_usage", False) else "s"
    return f"{key}:co:{mode}"


async def detach(flight: Flight, cancel: Callable[[], None]) -> bool:
    """The leader's client left before its answer: True (its request goes on) while someone
    follows, here or on another replica (asked now, one call, when nobody does here); then
    `cancel` once the last follower has gone, unless the answer has started by then (a
    stream's own leaving is `_Feed.left`'s, a complete answer is whole already)."""
    if flight.state != PENDING:
        return False
    if not flight.followed and flight.ask is not None:
        await flight.ask()
    if not flight.followed or flight.state != PENDING:
        return False

    def unread() -> None:
        if flight.state == PENDING:
            cancel()

    flight.on_unread = unread
    return True


def lead(flight: Flight, x: AnyExchange, response: Response) -> None:
    """The leader's answer (encode's), handed to its followers as it is sent. A stream's
    response becomes a `_Leading` one: the same status and headers, its chunks read through a
    `_Feed` that keeps the upstream call going for the followers if the client leaves."""
    if response.status_code != 200:
        flight.end(RETRY)
        return
    headers = {k: response.headers[k] for k in _SHARED if k in response.headers}
    flight.start({"media": response.media_type, "headers": headers})
    if isinstance(response, StreamingResponse):
        x.response = _Leading(_Feed(x, flight, response.body_iterator), response)
        return
    flight.add(bytes(response.body))
    flight.end(DONE, x.usage)


_END = object()  # the end of the leader's chunks
_DRAINS: set[asyncio.Task[None]] = set()  # at most one per flight: bounded by the registry


async def _step(chain: AsyncIterator[Any]) -> Any:
    try:
        return await anext(chain)
    except StopAsyncIteration:
        return _END


class _Feed:
    """The leader's stream (the cache's tee around the relay around the upstream stream),
    each chunk handed to the flight as it is sent.

    A client that leaves while nobody follows cancels the stream at once, as without
    coalescing (its upstream stream is closed). One that leaves while someone follows does
    not: the chunk being awaited is still awaited, then the stream is read on by `_drain`
    for the followers (and for the cache, which stores it once whole), and stopped as soon
    as the last follower has gone (`Flight.on_unread`). The leader's ledger record carries
    the one upstream call: written when the call ends, with what it used (the whole answer,
    if the followers read it to its end)."""

    __slots__ = ("chain", "flight", "gone", "over", "x")

    def __init__(self, x: AnyExchange, flight: Flight, chain: AsyncIterable[Any]) -> None:
        self.x = x
        self.flight = flight
        self.chain = aiter(chain)
        self.gone = False  # the leader's client has left
        self.over = False  # the flight has ended, as far as this feed goes

    async def chunks(self) -> AsyncIterator[Any]:
        """The leader's own stream, until it ends or its client has gone."""
        flight = self.flight
        while not self.gone:
            try:
                part = await _step(self.chain)
            except BaseException:  # failed, or cancelled (which closed the upstream stream)
                self._end(complete=False)
                raise
            if part is _END:
                self._end(complete=True)
                return
            flight.add(part if isinstance(part, bytes) else str(part).encode())
            yield part

    def _end(self, complete: bool) -> None:
        if not self.over:
            self.over = True
            usage = self.x.final_usage if complete else None
            self.flight.end(DONE if complete else CUT, usage)

    async def left(self, sending: asyncio.Task[None]) -> None:
        """The client has gone, while `sending` sends its stream: cancelled now unless
        someone follows (here, or on another replica: asked now), else when the last
        follower goes."""
        flight = self.flight
        if not self.over and not flight.followed and flight.ask is not None:
            await flight.ask()
        self.gone = True
        if self.over:
            return
        if flight.followed and flight.state == OPEN:
            flight.on_unread = _cancels(sending)
            return
        sending.cancel()

    async def leave(self, own: AsyncIterator[Any]) -> None:
        """The leader's response is over (sent whole, or its client left): the upstream
        stream is read on for the followers, if some read an open flight; else closed."""
        await close(own)
        if not self.over and self.flight.followed and self.flight.state == OPEN:
            task = asyncio.ensure_future(self._drain())
            _DRAINS.add(task)
            task.add_done_callback(_DRAINS.discard)
            return
        await self._stop()

    async def _drain(self) -> None:
        """The upstream stream read on, in a task of its own, after the leader's client left:
        its followers get the whole answer, the cache stores it, the relay accounts it. The
        last follower leaving cancels it where it stands, which closes the upstream stream."""
        flight = self.flight
        flight.on_unread = _cancels(asyncio.current_task())
        try:
            while flight.followed and not flight.ended:  # a flight too large ends (cut)
                part = await _step(self.chain)
                if part is _END:
                    self._end(complete=True)
                    return
                flight.add(part if isinstance(part, bytes) else str(part).encode())
        finally:
            flight.on_unread = None
            if not self.over:
                await self._stop()

    async def _stop(self) -> None:
        """The upstream stream closed, if it was not over (the relay accounts what was
        streamed, as for any client that left), and the flight cut if it had not ended."""
        await close(self.chain)
        self.x.finish(None, "cancelled")  # if the stream never started; else a no-op
        self._end(complete=False)


def _cancels(task: asyncio.Task[Any] | None) -> Callable[[], None]:
    """`task.cancel`, as `Flight.on_unread`."""

    def cancel() -> None:
        if task is not None:
            task.cancel()

    return cancel


class _Leading(StreamingResponse):
    """The leader's streamed response: `original`'s status and headers, `feed`'s chunks.
    Sent as Starlette sends a stream (a task sending, the client watched for leaving), except
    that a client leaving is the feed's to handle (`_Feed.left`)."""

    def __init__(self, feed: _Feed, original: StreamingResponse) -> None:
        self._chunks = feed.chunks()
        super().__init__(self._chunks, original.status_code, media_type=original.media_type)
        self.raw_headers = original.raw_headers
        self.background = original.background
        self._feed = feed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sending = asyncio.ensure_future(self.stream_response(send))
        watching = asyncio.ensure_future(self._watch(receive, sending))
        try:
            await asyncio.wait([sending])
        finally:
            watching.cancel()
            if not sending.done():  # this task was cancelled (a shutdown): so is the stream
                sending.cancel()
                await asyncio.wait([sending])
            await self._feed.leave(self._chunks)
        if not sending.cancelled():
            sending.result()  # an error in sending is the server's, as in Starlette's
        if self.background is not None:
            await self.background()

    async def _watch(self, receive: Receive, sending: asyncio.Task[None]) -> None:
        try:
            while (await receive())["type"] != "http.disconnect":
                continue
        except Exception:
            return  # no receive channel (a request built in a test): nothing to watch
        await self._feed.left(sending)


class _Following(StreamingResponse):
    """A follower's streamed response: it stops counting among the flight's readers when
    the response ends, however it ends."""

    def __init__(self, flight: Flight, body: AsyncIterator[bytes], media: str, headers: Any):
        super().__init__(body, media_type=media, headers=headers)
        self._body = body
        self._flight = flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await close(self._body)
            self._flight.leave()


async def answer(
    x: AnyExchange,
    flight: Flight,
    limiter: TenantLimiter | None,
    ledger: Records | None,
    waits: tuple[float, float],
) -> bool:
    """The leader's answer for this follower, once it has one (a complete answer once it is
    whole); False if the leader ended without one: the follower runs on. `waits`: how long
    to wait for the answer (the request's deadline), and a stream's idle timeout. The
    follower leaves the flight's readers here, or, streamed, when its response ends."""
    try:
        ready = await _ready(x, flight, time.monotonic() + waits[0])
        if ready:
            await _respond(x, flight, limiter, ledger, waits[1])
    except BaseException:
        flight.leave()
        raise
    if not ready or not isinstance(x.response, _Following):
        flight.leave()
    return ready


async def _ready(x: AnyExchange, flight: Flight, deadline: float) -> bool:
    """The flight opened by `deadline` (monotonic), and, for a complete answer, done."""
    if not await flight.opened(deadline):
        return False
    if not x.request.stream:
        while not flight.ended and (left := deadline - time.monotonic()) > 0:
            await flight.changed(left)
        return flight.state == DONE
    return True


async def _respond(
    x: AnyExchange,
    flight: Flight,
    limiter: TenantLimiter | None,
    ledger: Records | None,
    idle_s: float,
) -> None:
    admission = await admit(limiter, x.caller, x.payload, 0)
    admission.settle(0)
    rid = x.caller.request_id
    headers = {
        **flight.meta.get("headers", {}),
        "x-request-id": rid,
        CACHE_HEADER: COALESCED,
        COST_HEADER: FREE.dollars,
        **x.route_headers(),
        **admission.headers,
    }
    if x.spec.api == "anthropic":
        headers["request-id"] = rid
    media = flight.meta.get("media") or "application/json"
    if x.request.stream:
        stream = _relay(x, flight, idle_s, ledger)
        x.response = _Following(flight, stream, media, {**SSE_HEADERS, **headers})
    else:
        x.response = Response(b"".join(flight.chunks), media_type=media, headers=headers)
        record_free(x, flight.usage, COALESCED, ledger)


async def _relay(
    x: AnyExchange, flight: Flight, idle_s: float, ledger: Records | None
) -> AsyncIterator[bytes]:
    """Every chunk the leader sent so far, then the rest live (the price in its final usage
    made this request's: zero); recorded when it ends. A
    flight cut short (its leader's client left, or it outgrew what a flight holds) ends with
    an error event in the API's format, never silently."""
    try:
        async for chunk in flight.read(idle_s):
            yield _PRICE.sub(_FREE_PRICE, chunk) if COST_FIELD.encode() in chunk else chunk
        if flight.state != DONE:
            error = GatewayError(
                503,
                "the shared answer this request joined ended early; retry",
                code="coalesced_stream_cut",
            )
            cut = b"data: " + error.openai_body() + b"\n\n"
            yield error_event(error) if x.spec.api == "anthropic" else cut
    finally:
        record_free(x, flight.usage if flight.state == DONE else None, COALESCED, ledger)


def record_free(
    x: AnyExchange, usage: dict[str, Any] | None, outcome: str, ledger: Records | None
) -> None:
    """A request answered without an upstream call of its own: the usage line and a ledger
    record at zero cost, the tokens it saved kept apart from billed ones."""
    accounting.record_cache_hit(x.caller, x.request.model, x.started, usage, outcome)
    if ledger is not None:
        timing, priced = (x.started, None), (UsageSplit(), FREE)
        saved = UsageSplit.from_usage(usage)
        record = accounting.ledger_record(
            x.caller, x.spec.api, x.request.model, (None, 0), outcome, timing, priced, saved
        )
        ledger.append(record, x.spec.operation)
