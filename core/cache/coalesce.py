"""Request coalescing (README: Request coalescing): identical concurrent requests of a tenant
share one upstream call, within a process and across core replicas.

A `Flight` is one leader's answer as it is made: its start (the response's media type and
what served it), its chunks in order, and its end. Followers read a flight from its first
chunk, so one that joins mid-stream gets what it missed, then the rest live.

Within a process a `Coalescer` keeps the flights in flight (bounded: past `max_flights` a
request runs alone). With a shared state store, the first replica to take the lead lock
(`Store.lead`, SET NX with a TTL) leads; its publisher copies the flight into a list in the
store (`Store.log_append`: a start record, chunks as they accumulate, an end record, and a
heartbeat while nothing happens). On every other replica the first request for the key
becomes the local flight fed by one poller (`Store.log_read`, every 20 ms), so each replica
polls once per key however many followers it has. A lost leader (no record for
`LEADER_LOST_S`) or one that ended before answering lets its followers run again.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from core.state.errors import UNAVAILABLE
from core.state.store import Store

log = logging.getLogger("interlock.cache")

PENDING, OPEN, DONE, CUT, RETRY = "pending", "open", "done", "cut", "retry"
_ENDED = frozenset((DONE, CUT, RETRY))
POLL_S = 0.02  # a remote follower's poll interval
HEARTBEAT_S = 1.0  # a silent leader writes a heartbeat this often
LEADER_LOST_S = 5.0  # a leader silent this long is gone: its followers run again
_TAIL_S = 30.0  # the list outlives its end this long (a late poller still reads the end)
MAX_FLIGHT_S = 3600.0  # a safety net: a shared flight is ended after this, whatever happens


class Flight:
    """One leader's answer as it comes. `state`: pending (not answered yet), open (answered:
    `meta` is set, chunks come), done, cut (ended early: followers that started get what was
    sent), retry (ended without an answer to share: followers run on their own)."""

    __slots__ = ("_changed", "chunks", "max_bytes", "meta", "on_end", "size", "state", "usage")

    def __init__(self, max_bytes: int) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.max_bytes = max_bytes
        self.state = PENDING
        self.meta: dict[str, Any] = {}
        self.usage: dict[str, Any] | None = None
        self.on_end: Callable[[], None] | None = None  # the registry forgets it
        self._changed: asyncio.Event | None = None  # made only when someone waits

    @property
    def ended(self) -> bool:
        return self.state in _ENDED

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def start(self, meta: dict[str, Any]) -> None:
        if self.state == PENDING:
            self.meta = meta
            self.state = OPEN
            self._notify()

    def add(self, chunk: bytes) -> None:
        if self.state != OPEN or not chunk:
            return
        self.size += len(chunk)
        if self.size > self.max_bytes:  # too large to hold for followers: they get a cut
            self.end(CUT)
            return
        self.chunks.append(chunk)
        self._notify()

    def end(self, state: str, usage: dict[str, Any] | None = None) -> None:
        """The flight's end; `retry` only before it opened (followers may have started)."""
        if self.ended:
            return
        if state == RETRY and self.state == OPEN:
            state = CUT
        self.state = state
        self.usage = usage
        self._notify()
        if self.on_end is not None:
            self.on_end()

    def abandon(self) -> None:
        """The leader's request ended without answering (an error, a cancellation)."""
        if self.state == PENDING:
            self.end(RETRY)

    def abandoned(self, _task: object) -> None:
        """`abandon`, as the leader's task's done callback."""
        self.abandon()

    async def changed(self, timeout_s: float) -> None:
        """Until the next change, or `timeout_s`."""
        if self._changed is None:
            self._changed = asyncio.Event()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout_s)
        except TimeoutError:
            return

    async def opened(self, deadline: float) -> bool:
        """True once the leader answered (then its chunks follow); False if it ended without
        answering, or the wait outlasted `deadline` (monotonic): the follower runs alone."""
        while self.state == PENDING:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await self.changed(left)
        return self.state != RETRY

    async def read(self, idle_s: float) -> AsyncIterator[bytes]:
        """Every chunk from the first, then live ones, until the flight ends or nothing
        happens for `idle_s` (a stream's idle timeout: a long stream is not cut)."""
        seen = 0
        while True:
            if seen < len(self.chunks):
                chunk = b"".join(self.chunks[seen:])
                seen = len(self.chunks)
                yield chunk
                continue
            if self.ended:
                return
            await self.changed(idle_s)
            if seen == len(self.chunks) and not self.ended:
                return


class Coalescer:
    """The flights in flight in this process, and the replicas' shared ones (`store`: the
    Redis store itself, or None when there is no shared state)."""

    def __init__(self, store: Store | None, max_flights: int = 10_000) -> None:
        self._store = store
        self._flights: dict[str, Flight] = {}
        self._max_flights = max_flights
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._flights)

    async def join(self, key: str, ttl_s: float, max_bytes: int) -> tuple[Flight, bool] | None:
        """The flight for `key` and whether this request leads it; None past the bound."""
        flight = self._flights.get(key)
        if flight is not None and not flight.ended:  # an ended flight is forgotten at once
            return flight, False
        if len(self._flights) >= self._max_flights:
            return None
        flight = self._flights[key] = Flight(max_bytes)
        flight.on_end = lambda: self._drop(key, flight)
        if self._store is None:  # its leader's task ends it however it ends: no task here
            return flight, True
        token = uuid.uuid4().hex.encode()
        try:
            holder = await self._store.lead(key + ":lead", token, ttl_s)
        except UNAVAILABLE as exc:
            log.warning("coalescing lock failed (%s): leading locally", type(exc).__name__)
            return flight, True
        if holder is None:
            self._watch(flight, self._publish(key, token, flight, ttl_s))
            return flight, True
        self._watch(flight, self._poll(key, holder, flight))
        return flight, False

    def _drop(self, key: str, flight: Flight) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]

    def _watch(self, flight: Flight, work: Any) -> None:
        """Runs `work` (publishing or polling); the flight ends with it, or after
        MAX_FLIGHT_S whatever happened (then cut)."""
        self._spawn(self._forget(flight, work))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forget(self, flight: Flight, work: Any) -> None:
        try:
            async with asyncio.timeout(MAX_FLIGHT_S):
                await work
                while not flight.ended:
                    await flight.changed(MAX_FLIGHT_S)
        except TimeoutError:
            pass
        finally:
            flight.abandon()
            flight.end(CUT)  # a no-op once ended

    async def _publish(self, key: str, token: bytes, flight: Flight, ttl_s: float) -> None:
        """The leader's flight copied into the store for the other replicas: at most one
        append per POLL_S while chunks come (a fast stream's chunks go in batches), one per
        HEARTBEAT_S while nothing does."""
        assert self._store is not None
        name, sent, started = _log_name(key, token), 0, False
        last = time.monotonic()  # a follower's poller counts silence from its own start
        try:
            while True:
                items: list[bytes] = []
                if flight.state != PENDING and not started:
                    items.append(b"s" + orjson.dumps(flight.meta))
                    started = True
                if len(flight.chunks) > sent:
                    items.append(b"c" + b"".join(flight.chunks[sent:]))
                    sent = len(flight.chunks)
                ended = flight.ended
                if ended:
                    end = {"state": flight.state, "usage": flight.usage}
                    items.append(b"e" + orjson.dumps(end))
                if items or time.monotonic() - last >= HEARTBEAT_S:
                    await self._store.log_append(name, items or [b"h"], ttl_s + _TAIL_S)
                    last = time.monotonic()
                if ended:
                    return
                if items:  # pollers read every POLL_S: batch what comes until then
                    await asyncio.sleep(POLL_S)
                    continue  # what came meanwhile is sent before waiting again
                await flight.changed(HEARTBEAT_S)
        except UNAVAILABLE as exc:
            log.warning("coalescing publish failed (%s)", type(exc).__name__)
        finally:
            await asyncio.shield(self._release(key))

    async def _release(self, key: str) -> None:
        assert self._store is not None
        try:
            await self._store.release(key + ":lead")
        except UNAVAILABLE:
            return  # the lock's TTL ends it

    async def _poll(self, key: str, holder: bytes, flight: Flight) -> None:
        """Another replica's flight, read into this process's."""
        assert self._store is not None
        name, seen = _log_name(key, holder), 0
        heard = time.monotonic()
        try:
            while not flight.ended:
                items = await self._store.log_read(name, seen)
                seen += len(items)
                for item in items:
                    _apply(flight, item)
                now = time.monotonic()
                if items:
                    heard = now
                elif now - heard > LEADER_LOST_S:
                    flight.end(RETRY)
                    return
                await asyncio.sleep(POLL_S)
        except UNAVAILABLE as exc:
            log.warning("coalescing poll failed (%s)", type(exc).__name__)
            flight.end(RETRY)


def _log_name(key: str, token: bytes) -> str:
    return f"{key}:log:{token.decode()}"


def _apply(flight: Flight, item: bytes) -> None:
    kind, data = item[:1], item[1:]
    if kind == b"s":
        flight.start(orjson.loads(data))
    elif kind == b"c":
        flight.add(data)
    elif kind == b"e":
        end = orjson.loads(data)
        usage = end.get("usage")
        flight.end(str(end.get("state")), usage if isinstance(usage, dict) else None)
