"""The response cache as one pipeline stage, between resolve and plan (README: Response
cache). Chat and messages are cached; embeddings are not (their answers are cheap to make and
large to keep: a choice, said in the README).

A hit answers alone: no plan, no budget reservation, no upstream, no translation; it takes one
request from the tenant's rate limits (rpm) and no tokens, and its ledger record says
`cache_hit` at zero cost. A miss leaves a `Fill` on the exchange; encode hands it the answer,
which it stores when complete and successful: a complete answer's body as it is, a stream's
as assembled once it ended well (core.cache.assemble). Either can answer either kind of
request later (core.cache.replay).

Request coalescing (core.cache.coalesce, core.cache.follow) joins here, after a miss:
identical concurrent requests share one upstream call; the first leads (its `Fill` hands its
answer to the flight), the others follow it and answer from it.

An API whose answers are objects of their own (the Responses API: each has its id, can be
stored and fetched by it) is cached through the same stage by implementing `Cached`: what its
key is made of, what of an answer is kept, and how a kept (or shared) answer becomes this
request's own. Chat and messages need none of it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any, Protocol, cast

import orjson
from prometheus_client.core import Metric
from starlette.responses import Response, StreamingResponse

from core.cache import assemble, follow, replay
from core.cache.backend import Backend, Entry, MemoryBackend, StoreBackend
from core.cache.coalesce import Coalescer, Flight, Lead
from core.cache.follow import CACHE_HEADER, FREE, record_free
from core.cache.key import Directives, cache_key, directives
from core.limits.admission import admit
from core.limits.tenant import TenantLimiter
from core.observe.families import by, counters, gauge
from core.observe.records import Records
from core.pipeline.exchange import SSE_HEADERS, Exchange
from core.resilience.dispatch import close
from core.spend.quote import COST_HEADER
from shared.config_cache import CacheConfig, CachePolicy
from shared.errors import GatewayError

AnyExchange = Exchange[Any, Any, Any]
__all__ = ["CACHE_HEADER", "CACHE_HIT", "Fill", "ResponseCache"]
CACHE_HIT = "cache_hit"  # the ledger's and usage line's outcome of a hit
_MEDIA = {"chat": "text/event-stream", "messages": "text/event-stream; charset=utf-8"}
_REJOINS = 3  # a follower whose leader ended without an answer joins again at most this often


class Cached(Protocol):
    """An API spec that says how its answers are cached (see the module docstring)."""

    cache_kind: str

    def cache_payload(self, x: AnyExchange) -> dict[str, Any]:
        """What determines the answer: the key's request part."""
        ...

    def cache_entry(self, raw: bytes, streamed: bool) -> bytes | None:
        """The entry to keep for an answer sent (its body, or a stream's bytes), or None."""
        ...

    def cache_read(self, body: bytes) -> Any:
        """A kept entry's body as `cache_answer` takes it; None when it cannot be read back
        (then it is a miss, never an error)."""
        ...

    async def cache_answer(self, x: AnyExchange, kept: Any, headers: dict[str, str]) -> Any:
        """A hit: the kept entry (as read) as this request's own answer (a Response)."""
        ...

    async def cache_follow(self, x: AnyExchange) -> None:
        """A coalesced follower's response (the leader's answer) made this request's own."""
        ...


def own_caching(spec: Any) -> Cached | None:
    """The spec's own caching, if it has any: an attribute lookup, since a Protocol's
    isinstance check costs microseconds on every chat request."""
    return cast(Cached, spec) if getattr(spec, "cache_kind", None) is not None else None


def _kind(x: AnyExchange) -> str | None:
    """chat, messages, an API's own (Cached), or None (not cached: embeddings)."""
    own = own_caching(x.spec)
    if own is not None:
        return own.cache_kind
    if x.spec.api == "anthropic":
        return "messages"
    return "chat" if hasattr(x.request, "include_usage") else None


class Fill:
    """A miss (or a `no-cache` request) whose answer is to be stored; `store` False for a
    bypass, which only says so in its header."""

    __slots__ = (
        "backend",
        "coalescer",
        "flight",
        "key",
        "kind",
        "max_bytes",
        "status",
        "store",
        "ttl_s",
    )

    def __init__(
        self, backend: Backend, key: str, kind: str, ttl_s: float, max_bytes: int, status: str
    ) -> None:
        self.backend = backend
        self.key = key
        self.kind = kind
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self.status = status
        self.store = status == "miss"
        self.flight: Flight | None = None  # set when this request leads a coalesced flight
        self.coalescer: Coalescer | None = None  # the flight's, when it leads one

    async def encoded(self, x: AnyExchange, response: Response) -> None:
        """Encode's answer: headed, and stored (awaited: one SET, so the next identical
        request finds it) or, for a stream, stored once it has ended well; then handed to
        the request's followers, if it leads (after the store, so a request arriving as the
        flight ends finds the entry)."""
        response.headers[CACHE_HEADER] = self.status
        if self.store and response.status_code == 200:
            if isinstance(response, StreamingResponse):
                response.body_iterator = self._tee(x, response.body_iterator)
            else:
                body: bytes | None = bytes(response.body)
                own = own_caching(x.spec)
                if body is not None and own is not None:
                    body = own.cache_entry(body, False)
                if body is not None and len(body) <= self.max_bytes:
                    await self._put(Entry(time.time(), x.usage, body).encode())
        if self.flight is not None:
            follow.lead(self.flight, x, response)

    async def keep(self, cancel: Callable[[], None]) -> bool:
        """The client left before the answer: whether the request goes on for the flight's
        followers (core.cache.follow.detach)."""
        return self.flight is not None and await follow.detach(self.flight, cancel)

    async def _tee(self, x: AnyExchange, body: AsyncIterable[Any]) -> AsyncIterator[Any]:
        """The stream as sent, kept (up to max_bytes, then given up on) until it ends."""
        kept: bytearray | None = bytearray()
        try:
            async for part in body:
                if kept is not None:
                    kept += part if isinstance(part, bytes) else str(part).encode()
                    if len(kept) > 4 * self.max_bytes:  # events are wordier than the answer
                        kept = None
                yield part
        finally:
            if isinstance(body, AsyncIterator):
                await close(body)
        if kept is not None:
            await self._store_stream(bytes(kept), x.final_usage, x.spec)

    async def _store_stream(self, raw: bytes, usage: dict[str, Any] | None, spec: Any) -> None:
        own = own_caching(spec)
        if own is not None:
            entry = own.cache_entry(raw, True)
            if entry is not None and len(entry) <= self.max_bytes:
                await self._put(Entry(time.time(), usage, entry).encode())
            return
        if self.kind == "chat":
            complete = assemble.chat_completion(raw, usage)
        else:
            complete = assemble.anthropic_message(raw)
        if complete is None:  # cut, failed or incomplete: never stored
            return
        body = orjson.dumps(complete)
        if len(body) <= self.max_bytes:
            await self._put(Entry(time.time(), usage, body).encode())

    async def _put(self, entry: bytes) -> None:
        """One SET; a leader that has not asked whether anyone follows yet releases its
        coalescing lock in the same call (Store.set_unlead): a complete miss is then two round
        trips, the lookup with the lock and this, and there is never a moment with neither
        the lock nor the entry (a request arriving then would call upstream again)."""
        flight, coalescer = self.flight, self.coalescer
        if flight is None or coalescer is None or not isinstance(self.backend, StoreBackend):
            await self.backend.set(self.key, entry, self.ttl_s)
            return
        quiet = coalescer.quiet_lock(flight)
        if quiet is None:
            await self.backend.set(self.key, entry, self.ttl_s)
            return
        wanted = await self.backend.set_unlead(self.key, entry, self.ttl_s, *quiet)
        coalescer.released(flight, wanted)


class ResponseCache:
    """The stage: a lookup (one GET) for every request the cache applies to."""

    name = "cache"

    def __init__(
        self,
        config: CacheConfig,
        backend: Backend,
        limiter: TenantLimiter | None,
        ledger: Records | None = None,
        coalescer: Coalescer | None = None,
        waits: tuple[float, float] = (600.0, 120.0),
    ) -> None:
        self._config = config
        self._backend = backend
        self._limiter = limiter
        self._ledger = ledger
        self._coalescer = coalescer
        # How long a follower waits for its leader's answer (the request's deadline), and
        # for the next chunk of a stream (the stream idle timeout).
        self._waits = waits
        self.outcomes = {"hit": 0, "miss": 0, "bypass": 0, "coalesced": 0}  # for /metrics

    def metric_families(self) -> list[Metric]:
        """Lookups by outcome (coalesced: answered by another request's call), flights in
        flight and, in memory, the entries' size."""
        out = [
            counters(
                "interlock_response_cache_total",
                "Requests the response cache saw, by outcome.",
                ("outcome",),
                by(self.outcomes),
            )
        ]
        if self._coalescer is not None:
            out.append(
                gauge(
                    "interlock_coalescing_flights",
                    "Coalesced flights in flight in this core.",
                    len(self._coalescer),
                )
            )
        if isinstance(self._backend, MemoryBackend):
            out.append(
                gauge(
                    "interlock_response_cache_bytes",
                    "Bytes held by the in-memory cache.",
                    self._backend.size,
                )
            )
        return out

    async def __call__(self, x: AnyExchange) -> None:
        kind = _kind(x)
        if kind is None:
            return
        policy = self._config.policy(x.caller.tenant, x.route.name, x.request.model)
        asked = directives(x.http.headers.get("cache-control"))
        headers = getattr(x.request, "client_headers", None) or {}
        key, lead, coalesce = "", None, False
        if policy.enabled and not asked.no_store:
            own = own_caching(x.spec)
            payload = own.cache_payload(x) if own is not None else x.payload
            key = cache_key(x.caller.tenant, kind, x.route.name, payload, headers)
            coalesce = policy.coalesce and follow.eligible(x, asked)
            if not asked.no_cache:
                raw, lead = await self._find(x, key, coalesce)
                await self._settled(x, key, lead)
                if raw is not None and await self._lookup(x, kind, raw, asked, policy.ttl_s):
                    self.outcomes["hit"] += 1
                    return
        status = "miss" if key else "bypass"
        fill = Fill(self._backend, key, kind, policy.ttl_s, policy.max_entry_bytes, status)
        if coalesce and await self._coalesce(x, key, policy, fill, lead):
            self.outcomes["coalesced"] += 1
            return
        self.outcomes[status] += 1
        x.cache_fill = fill

    async def _settled(self, x: AnyExchange, key: str, lead: Lead | None) -> None:
        """The hop nonce settled before anything the lookup found or took is used (its claim
        left with the lookup: core.api.nonce_claim); a replay gives the lock back."""
        try:
            await x.caller.settled()
        except GatewayError:
            if lead is not None and self._coalescer is not None:
                self._coalescer.give_back(follow.flight_key(key, x), lead)
            raise

    async def _find(
        self, x: AnyExchange, key: str, coalesce: bool
    ) -> tuple[bytes | None, Lead | None]:
        """The stored entry, if any; for a request that may coalesce across replicas, a miss
        takes (or counts itself on) the flight's lock in the same call (Store.get_or_lead):
        the lookup and the lock are one round trip, not two. A request whose flight already
        runs in this process follows it without a lookup (its answer is not stored yet)."""
        coalescer, backend = self._coalescer, self._backend
        if not coalesce or coalescer is None or not coalescer.shared:
            return await backend.get(key), None
        name = follow.flight_key(key, x)
        if coalescer.in_flight(name):
            return None, None
        if not isinstance(backend, StoreBackend):
            return await backend.get(key), None
        token = Coalescer.token()
        found = await backend.get_or_lead(key, Coalescer.lock_of(name), token, self._waits[0])
        if found is None:  # the store failed: a miss, and the join leads locally
            return None, None
        raw, holder = found
        return (raw, None) if raw is not None else (None, (token, holder))

    async def _coalesce(
        self, x: AnyExchange, key: str, policy: CachePolicy, fill: Fill, lead: Lead | None
    ) -> bool:
        """True if another request's answer answered this one; else this request runs, and
        leads when `fill.flight` is set (its followers run again if it ends unanswered:
        the done callback, since an error or a cancellation skips encode). `lead`: the lock
        the lookup already asked for (the first join's)."""
        if self._coalescer is None:
            return False
        name = follow.flight_key(key, x)
        for _ in range(_REJOINS):
            limit = 4 * policy.max_entry_bytes  # as the cache's stream tee
            joined = await self._coalescer.join(name, self._waits[0], limit, lead)
            lead = None  # a later join (its leader ended unanswered) asks again
            if joined is None:  # the registry is full: run alone
                return False
            flight, leading = joined
            if leading:
                fill.flight, fill.coalescer = flight, self._coalescer
                task = asyncio.current_task()
                if task is not None:
                    task.add_done_callback(flight.abandoned)
                return False
            if await follow.answer(x, flight, self._limiter, self._ledger, self._waits):
                own = own_caching(x.spec)
                if own is not None:
                    await own.cache_follow(x)
                return True
        return False

    async def _lookup(
        self, x: AnyExchange, kind: str, raw: bytes, asked: Directives, ttl_s: float
    ) -> bool:
        """A hit answered from `raw`, the stored entry, if it decodes and is fresh enough."""
        entry = Entry.decode(raw)
        if entry is None:
            return False
        age = max(0.0, time.time() - entry.stored_at)
        if age > ttl_s or (asked.max_age is not None and age > asked.max_age):
            return False
        own = own_caching(x.spec)
        kept = own.cache_read(entry.body) if own is not None else None
        if own is not None and kept is None:
            return False
        await self._hit(x, kind, entry, age, kept)
        return True

    async def _hit(
        self, x: AnyExchange, kind: str, entry: Entry, age: float, kept: Any = None
    ) -> None:
        """The stored answer, in the request's mode; one request off the rate limits (a 429
        when over, as for any request), no tokens; recorded as a free `cache_hit`."""
        admission = await admit(self._limiter, x.caller, x.payload, 0)
        admission.settle(0)
        rid = x.caller.request_id
        headers = {
            "x-request-id": rid,
            CACHE_HEADER: "hit",
            "age": str(int(age)),
            COST_HEADER: FREE.dollars,
            **x.route_headers(),
            **admission.headers,
        }
        if kind == "messages":
            headers["request-id"] = rid
        own = own_caching(x.spec)
        if own is not None:
            x.response = await own.cache_answer(x, kept, headers)
        elif x.request.stream:
            stream = (
                replay.chat_stream(entry.body, bool(x.request.include_usage))
                if kind == "chat"
                else replay.messages_stream(entry.body)
            )
            x.response = StreamingResponse(
                stream, media_type=_MEDIA[kind], headers={**SSE_HEADERS, **headers}
            )
        else:
            x.response = Response(entry.body, media_type="application/json", headers=headers)
        record_free(x, entry.usage, CACHE_HIT, self._ledger)
