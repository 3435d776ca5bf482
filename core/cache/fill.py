"""A response-cache miss's fill (core.cache.stage): what a miss leaves on the exchange, so
that encode's answer is stored when complete and successful (a complete answer's body as it
is, a stream's as assembled once it ended well: core.cache.assemble) and handed to the
request's coalesced followers if it leads (core.cache.follow); and `Cached`, how an API whose
answers are objects of their own says what of them is kept."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine
from typing import Any, Protocol, cast

import orjson
from starlette.responses import Response, StreamingResponse

from core.cache import assemble, follow
from core.cache.backend import Backend, Entry, StoreBackend
from core.cache.coalesce import DONE, Coalescer, Flight
from core.cache.follow import CACHE_HEADER
from core.pipeline.exchange import Exchange
from core.resilience.dispatch import close

AnyExchange = Exchange[Any, Any, Any]
log = logging.getLogger("interlock.cache")
# Stores under way beside their answers: at most one per request in flight, each one store
# call (bounded by the store's timeout).
_KEEPING: set[asyncio.Task[None]] = set()


class Cached(Protocol):
    """An API spec that says how its answers are cached (see core.cache.stage's docstring)."""

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
        """Encode's answer: headed, and stored (a complete answer beside its sending,
        `_keep`; a stream once it has ended well) and handed to the request's followers if
        it leads; its flight ends after the store, so a request arriving as it ends finds
        the entry."""
        response.headers[CACHE_HEADER] = self.status
        flight = self.flight
        if self.store and response.status_code == 200:
            if isinstance(response, StreamingResponse):
                response.body_iterator = self._tee(x, response.body_iterator)
            elif (entry := self._entry(x, response)) is not None:
                if flight is not None:
                    follow.lead(flight, x, response, end=False)
                _beside(self._keep(entry, x.usage))
                return
        if flight is not None:
            follow.lead(flight, x, response)

    def _entry(self, x: AnyExchange, response: Response) -> bytes | None:
        """A complete answer's entry, or None when it is not kept (too large, or its API's
        own caching keeps nothing of it)."""
        body: bytes | None = bytes(response.body)
        own = own_caching(x.spec)
        if body is not None and own is not None:
            body = own.cache_entry(body, False)
        if body is None or len(body) > self.max_bytes:
            return None
        return Entry(time.time(), x.usage, body).encode()

    async def _keep(self, entry: bytes, usage: dict[str, Any] | None) -> None:
        """A complete answer's store while the answer is sent (a store round trip off its
        path), then its flight's end. The next identical request still finds the entry: this
        replica writes the SET in its next loop step, on the connection each of its later
        lookups takes (one per node, in order), long before a client can ask again; another
        replica's request meets the coalescing lock until the entry is there (the store
        releases it in the same call), and the leader's followers wait for the end."""
        try:
            await self._put(entry)
        finally:
            if self.flight is not None:
                self.flight.end(DONE, usage)

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


def _beside(work: Coroutine[Any, Any, None]) -> None:
    """`work` as a task of its own, held until it ends; a failure is logged (the answer has
    gone: a store that failed is a later miss, never an error)."""
    task = asyncio.ensure_future(work)
    _KEEPING.add(task)
    task.add_done_callback(_kept)


def _kept(task: asyncio.Task[None]) -> None:
    _KEEPING.discard(task)
    if not task.cancelled() and (error := task.exception()) is not None:
        log.warning("response cache store failed (%s): not stored", type(error).__name__)
