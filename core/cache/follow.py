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
upstream error, its own rate limit or budget, its client leaving) lets its followers run again
(one of them leads): those errors are the leader's own, not the answer's.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from starlette.responses import Response, StreamingResponse

from core.api.messages.stream import error_event
from core.cache.coalesce import CUT, DONE, RETRY, Flight
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


def lead(flight: Flight, x: AnyExchange, response: Response) -> None:
    """The leader's answer (encode's), handed to its followers as it is sent."""
    if response.status_code != 200:
        flight.end(RETRY)
        return
    headers = {k: response.headers[k] for k in _SHARED if k in response.headers}
    flight.start({"media": response.media_type, "headers": headers})
    if isinstance(response, StreamingResponse):
        response.body_iterator = _feed(x, flight, response.body_iterator)
        return
    flight.add(bytes(response.body))
    flight.end(DONE, x.usage)


async def _feed(x: AnyExchange, flight: Flight, body: AsyncIterable[Any]) -> AsyncIterator[Any]:
    complete = False
    try:
        async for part in body:
            flight.add(part if isinstance(part, bytes) else str(part).encode())
            yield part
        complete = True
    finally:
        if isinstance(body, AsyncIterator):
            await close(body)
        flight.end(DONE if complete else CUT, x.final_usage if complete else None)


async def answer(
    x: AnyExchange,
    flight: Flight,
    limiter: TenantLimiter | None,
    ledger: Records | None,
    waits: tuple[float, float],
) -> bool:
    """The leader's answer for this follower, once it has one (a complete answer once it is
    whole); False if the leader ended without one: the follower runs on. `waits`: how long
    to wait for the answer (the request's deadline), and a stream's idle timeout."""
    wait_s, idle_s = waits
    deadline = time.monotonic() + wait_s
    if not await flight.opened(deadline):
        return False
    if not x.request.stream:
        while not flight.ended and (left := deadline - time.monotonic()) > 0:
            await flight.changed(left)
        if flight.state != DONE:
            return False
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
        x.response = StreamingResponse(stream, media_type=media, headers={**SSE_HEADERS, **headers})
    else:
        x.response = Response(b"".join(flight.chunks), media_type=media, headers=headers)
        record_free(x, flight.usage, COALESCED, ledger)
    return True


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
