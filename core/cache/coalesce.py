"""Request coalescing (README: Request coalescing): identical concurrent requests of a tenant
share one upstream call, within a process and across core replicas.

A `Flight` (core.cache.flight) is one leader's answer as it is made; followers read it from
its first chunk, so one that joins mid-stream gets what it missed, then the rest live.

Within a process a `Coalescer` keeps the flights in flight (bounded: past `max_flights` a
request runs alone). With a shared state store, the first replica to take the lead lock
(`Store.lead`, one script call) leads. A request on another replica that finds the lock is
counted on it as a follower by that same call, and becomes its replica's local flight, fed by
one poller (`Store.log_read`, every 20 ms): each replica polls once per key however many
followers it has.

A leader publishes only when wanted. Nobody following is the common case, so it pays the
lock and its release (`Store.unlead`, which also answers whether anyone came meanwhile; or, by
the leader that has not asked yet, the answer's store in the cache: `Store.set_unlead`, see
`quiet_lock`) and nothing else (not even a task of its own: a timer), unless its flight
lasts: then it asks
whether it is wanted (`Store.wanted`, one HGET) once a second while pending (complete
answers, a stream's wait for its first chunk), and 0.1 s after a stream opens, then 0.2,
0.4... s after that (at most a second apart): a 0.5 s stream asks twice.
From the first follower on it copies the flight into a list in the store
(`Store.log_append`: its backlog, which it holds in memory anyway, then chunks as they
accumulate, an end record, and a heartbeat each silent second). A follower that hears nothing
for `LEADER_LOST_S` after announcing itself (the leader asks at least once a second) or whose
leader ended before answering runs again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import orjson

from core.cache.flight import CUT, DONE, OPEN, PENDING, RETRY, Flight
from core.state.errors import UNAVAILABLE
from core.state.store import Store

log = logging.getLogger("interlock.cache")

__all__ = ["CUT", "DONE", "OPEN", "PENDING", "RETRY", "Coalescer", "Flight", "Lead"]
# A coalescing lock asked for before joining: the token, and the holder's token (None: held).
Lead = tuple[bytes, bytes | None]
POLL_S = 0.02  # a remote follower's poll interval
HEARTBEAT_S = 1.0  # a silent leader writes a heartbeat (or, unwanted, asks) this often
ASK_S = 0.1  # an open stream's leader asks whether it is wanted after this, then less often
LEADER_LOST_S = 5.0  # a leader silent this long is gone: its followers run again
_TAIL_S = 30.0  # the list outlives its end this long (a late poller still reads the end)
MAX_FLIGHT_S = 3600.0  # a safety net: a shared flight is ended after this, whatever happens


class Coalescer:
    """The flights in flight in this process, and the replicas' shared ones (`store`: the
    Redis store itself, or None when there is no shared state)."""

    def __init__(self, store: Store | None, max_flights: int = 10_000) -> None:
        self._store = store
        self._flights: dict[str, Flight] = {}
        self._max_flights = max_flights
        self._tasks: set[asyncio.Task[None]] = set()
        # Leaders that have not asked whether anyone follows yet: their lock and token, and,
        # once the answer's store released the lock (`released`), the followers it counted.
        self._quiets: dict[Flight, _Quiet] = {}

    def __len__(self) -> int:
        return len(self._flights)

    @property
    def shared(self) -> bool:
        """Whether flights are shared with other replicas (a lock in the store)."""
        return self._store is not None

    def in_flight(self, key: str) -> bool:
        """A flight for `key` runs in this process: a request for it follows it (and need not
        look in the cache: its answer is not stored before the flight ends)."""
        flight = self._flights.get(key)
        return flight is not None and not flight.ended

    @staticmethod
    def lock_of(key: str) -> str:
        return key + _LOCK

    @staticmethod
    def token() -> bytes:
        return os.urandom(12).hex().encode()

    async def join(
        self, key: str, ttl_s: float, max_bytes: int, lead: Lead | None = None
    ) -> tuple[Flight, bool] | None:
        """The flight for `key` and whether this request leads it; None past the bound. A
        follower counts among the flight's `readers` until it calls `Flight.leave`. `lead`:
        the lock already asked for with this token (Store.get_or_lead: the cache lookup's
        call), and its answer (the holder's token, or None: this request holds it)."""
        flight = self._flights.get(key)
        if flight is not None and not flight.ended:  # an ended flight is forgotten at once
            flight.readers += 1
            if lead is not None:  # a local flight began meanwhile: the lock is not ours
                self._spawn(self._give_back(key + _LOCK, lead))
            return flight, False
        if len(self._flights) >= self._max_flights:
            return None
        flight = self._flights[key] = Flight(max_bytes)
        flight.on_end = lambda: self._drop(key, flight)
        if self._store is None:  # its leader's task ends it however it ends: no task here
            return flight, True
        token, holder = lead if lead is not None else (self.token(), b"")
        try:
            if lead is None:
                holder = await self._store.lead(key + _LOCK, token, ttl_s)
        except UNAVAILABLE as exc:
            log.warning("coalescing lock failed (%s): leading locally", type(exc).__name__)
            return flight, True
        if holder is None:
            flight.ask = lambda: self._ask(key + _LOCK, flight)
            self._quiet(key, token, flight, ttl_s)
            return flight, True
        flight.readers += 1
        self._watch(flight, self._poll(key, holder, flight))
        return flight, False

    def quiet_lock(self, flight: Flight) -> tuple[str, bytes] | None:
        """The shared lock `flight`'s leader holds and has not asked about yet (lock, token),
        for the answer's store to release in its own call (Store.set_unlead): a complete miss
        then costs two round trips (lookup and lock; store and release), not three. None when
        there is none, or once the leader asks (it then releases the lock itself). From here
        until `released` the leader does not start asking: the lock goes with the store."""
        quiet = self._quiets.get(flight)
        if quiet is None or quiet.releasing:
            return None
        quiet.releasing = True
        return quiet.lock

    def released(self, flight: Flight, wanted: int | None) -> None:
        """The answer's store released `flight`'s lock (Store.set_unlead), which counted
        `wanted` followers: no release call at the end, and they get the whole flight in one
        append once it ends. None: the store failed and the lock is still held: released
        at the end as usual."""
        quiet = self._quiets.get(flight)
        if quiet is not None:
            quiet.released = wanted
            quiet.releasing = wanted is not None

    def _drop(self, key: str, flight: Flight) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]

    def _watch(self, flight: Flight, work: Any) -> None:
        """Runs `work` (leading or polling); the flight ends with it, or after
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

    def _quiet(self, key: str, token: bytes, flight: Flight, ttl_s: float) -> None:
        """A leader's side in the store while it has not asked whether anyone follows: no
        task, a timer (HEARTBEAT_S while pending, ASK_S once its stream opened) that starts
        `_lead`, which asks. Over before that, it releases the lock (a task for that call)."""
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle
        quiet = self._quiets[flight] = _Quiet((key + _LOCK, token), _log_name(key, token), ttl_s)

        def ask() -> None:
            if quiet.releasing:  # the answer's store releases the lock: nothing to ask
                return
            flight.on_milestone = None
            self._quiets.pop(flight, None)
            self._watch(flight, self._lead(key, token, flight, ttl_s))

        def milestone() -> None:
            nonlocal timer
            timer.cancel()
            if flight.ended:
                flight.on_milestone = None
                self._quiets.pop(flight, None)
                if quiet.released is None:
                    how = (flight, ttl_s, False)
                    self._spawn(self._unlead(key + _LOCK, token, quiet.name, how))
                elif quiet.released:
                    self._spawn(self._hand_over(flight, quiet))
            else:  # opened: its followers want its chunks soon
                timer = loop.call_later(ASK_S, ask)

        timer = loop.call_later(HEARTBEAT_S, ask)
        flight.on_milestone = milestone

    async def _lead(self, key: str, token: bytes, flight: Flight, ttl_s: float) -> None:
        """The leader's side in the store once it asks: unwanted, only the lock's release at
        the end; wanted, the flight published from its first record, then the release."""
        assert self._store is not None
        lock, name, published = key + _LOCK, _log_name(key, token), False
        try:
            if await self._wanted(lock, flight):
                published = True
                await self._publish(lock, name, flight, ttl_s)
        except UNAVAILABLE as exc:
            log.warning("coalescing publish failed (%s)", type(exc).__name__)
        finally:
            await asyncio.shield(self._unlead(lock, token, name, (flight, ttl_s, published)))

    async def _ask(self, lock: str, flight: Flight) -> None:
        assert self._store is not None
        try:
            flight.heard(await self._store.wanted(lock))
        except UNAVAILABLE:
            return

    async def _wanted(self, lock: str, flight: Flight) -> bool:
        """True once another replica follows (the lock counts it); False if the flight ended
        first. Asked now, then once per HEARTBEAT_S while pending (a follower hears within
        LEADER_LOST_S), and ASK_S after a stream opens, then twice as long each time up to
        HEARTBEAT_S: a stream over within ASK_S of its first chunk never asks."""
        assert self._store is not None
        state = flight.state
        delay = HEARTBEAT_S if state == PENDING else ASK_S
        while not flight.ended:
            if flight.state != state:  # it opened: ask soon, then less and less often
                state, delay = flight.state, ASK_S
                await flight.milestone(delay)
                continue
            wanted = await self._store.wanted(lock)
            if wanted:
                flight.heard(wanted)
                return True
            if state == OPEN:
                delay = min(2 * delay, HEARTBEAT_S)
            await flight.milestone(delay)
        return False

    async def _publish(self, lock: str, name: str, flight: Flight, ttl_s: float) -> None:
        """The flight copied into the store for the other replicas, from its first record:
        at most one append per POLL_S while chunks come (a fast stream's chunks go in
        batches), one per HEARTBEAT_S while nothing does. Each append hears how many remote
        followers the lock still counts."""
        assert self._store is not None
        sent, started = 0, False
        last = time.monotonic()
        while True:
            items, sent, started = _records(flight, sent, started)
            ended = flight.ended
            if items or time.monotonic() - last >= HEARTBEAT_S:
                flight.heard(
                    await self._store.log_append(name, items or [b"h"], ttl_s + _TAIL_S, lock)
                )
                last = time.monotonic()
            if ended:
                return
            if items:  # pollers read every POLL_S: batch what comes until then
                await asyncio.sleep(POLL_S)
                continue  # what came meanwhile is sent before waiting again
            await flight.changed(HEARTBEAT_S)

    def give_back(self, key: str, lead: Lead) -> None:
        """`lead` (a lookup's lock for `key`, or its count as a follower) unused after all: a
        replayed hop credential's (core.cache.stage)."""
        if self._store is not None:
            self._spawn(self._give_back(key + _LOCK, lead))

    async def _give_back(self, lock: str, lead: Lead) -> None:
        """A lock asked for by a request that follows a local flight after all: released if
        it took it, else its count as a follower taken back."""
        assert self._store is not None
        token, holder = lead
        try:
            if holder is None:
                await self._store.unlead(lock, token)
            else:
                await self._store.unfollow(lock, holder)
        except UNAVAILABLE:
            return  # the lock's TTL ends it

    async def _unlead(
        self, lock: str, token: bytes, name: str, how: tuple[Flight, float, bool]
    ) -> None:
        """The lock given up. A follower that came since the last ask (the release counts
        it) gets the whole flight in one append, if it ended; else it finds the leader lost."""
        assert self._store is not None
        flight, ttl_s, published = how
        try:
            wanted = await self._store.unlead(lock, token)
            if wanted and not published and flight.ended:
                items = _records(flight, 0, False)[0]
                await self._store.log_append(name, items, ttl_s + _TAIL_S, lock)
        except UNAVAILABLE:
            return  # the lock's TTL ends it

    async def _hand_over(self, flight: Flight, quiet: _Quiet) -> None:
        """The whole ended flight in one append, for the followers its lock counted when the
        answer's store released it (`released`)."""
        assert self._store is not None
        try:
            items = _records(flight, 0, False)[0]
            await self._store.log_append(quiet.name, items, quiet.ttl_s + _TAIL_S, quiet.lock[0])
        except UNAVAILABLE:
            return  # the followers find the leader lost and run again

    async def _poll(self, key: str, holder: bytes, flight: Flight) -> None:
        """Another replica's flight, read into this process's; given up (and the lock told)
        once every local follower has left."""
        assert self._store is not None
        lock, name, seen = key + _LOCK, _log_name(key, holder), 0
        heard = time.monotonic()
        try:
            while not flight.ended:
                if not flight.readers:
                    flight.end(CUT)  # nobody left to read it here
                    await self._store.unfollow(lock, holder)
                    return
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


class _Quiet:
    """A quiet leader's lock (core.cache.coalesce.Coalescer._quiets)."""

    __slots__ = ("lock", "name", "released", "releasing", "ttl_s")

    def __init__(self, lock: tuple[str, bytes], name: str, ttl_s: float) -> None:
        self.lock = lock  # the lock's key and this leader's token
        self.name = name  # the flight's log in the store
        self.ttl_s = ttl_s
        self.releasing = False  # the answer's store is releasing (or released) it
        self.released: int | None = None  # the followers counted when the store released it


_LOCK = ":leader"  # not the former ":lead" string: a hash now (no WRONGTYPE mid-upgrade)


def _records(flight: Flight, sent: int, started: bool) -> tuple[list[bytes], int, bool]:
    """What is left to publish of `flight` after `sent` chunks (and its start, if
    `started`): the start, the chunks since in one record, the end; and the new marks."""
    items: list[bytes] = []
    if flight.state != PENDING and not started:
        items.append(b"s" + orjson.dumps(flight.meta))
        started = True
    if len(flight.chunks) > sent:
        items.append(b"c" + b"".join(flight.chunks[sent:]))
        sent = len(flight.chunks)
    if flight.ended:
        items.append(b"e" + orjson.dumps({"state": flight.state, "usage": flight.usage}))
    return items, sent, started


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
