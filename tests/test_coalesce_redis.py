"""What coalescing costs and does through a real Redis (the session's private redis-server),
driving core.cache.coalesce's Coalescer directly: two Coalescers on one Redis stand for two
core replicas. Every store call is counted by a wrapper around the real RedisStore.

A leader nobody follows pays the lock and its release only: no list is written. A follower
on another replica is heard whenever it comes: before the leader's first ask (the release
hands it the whole flight), while the leader waits for its answer (the leader's ask finds it
and heartbeats from then on, so the follower does not think it lost), or mid-stream.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from core.cache import coalesce
from core.cache.coalesce import DONE, Coalescer, Flight
from core.state.redis_store import RedisStore


class Counting:
    """The real store, each call's method name recorded in `calls`."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.store, name)

        async def call(*args: Any) -> Any:
            self.calls.append(name)
            return await method(*args)

        return call


def replicas(redis_url: str, scenario: Callable[..., Awaitable[Any]]) -> Any:
    """`scenario(one, two, counted)`: two Coalescers on one Redis; `counted` is one's store."""

    async def main() -> Any:
        store = RedisStore(redis_url)
        counted = Counting(store)
        try:
            one, two = Coalescer(counted), Coalescer(store)  # type: ignore[arg-type]
            return await scenario(one, two, counted)
        finally:
            await store.close()

    return asyncio.run(main())


def key() -> str:
    return f"cache:{{t-{uuid.uuid4().hex}}}:digest:co:s"


async def lead(coalescer: Coalescer, name: str) -> Flight:
    joined = await coalescer.join(name, 30, 1 << 20)
    assert joined is not None and joined[1]
    return joined[0]


async def follow(coalescer: Coalescer, name: str) -> Flight:
    joined = await coalescer.join(name, 30, 1 << 20)
    assert joined is not None and not joined[1]
    return joined[0]


async def settled(coalescer: Coalescer) -> None:
    """Until the coalescer's own tasks (leading, polling) are over."""
    while coalescer._tasks:
        await asyncio.gather(*coalescer._tasks)


async def body(flight: Flight) -> bytes:
    return b"".join([chunk async for chunk in flight.read(5.0)])


def list_keys(redis_url: str, name: str) -> list[bytes]:
    async def scan() -> list[bytes]:
        store = RedisStore(redis_url)
        try:
            found = await store._client.call("KEYS", name + ":log:*")
            return list(found or [])
        finally:
            await store.close()

    return asyncio.run(scan())


def test_an_unfollowed_complete_answer_costs_the_lock_and_its_release(redis_url: str) -> None:
    name = key()

    async def scenario(one: Coalescer, _two: Coalescer, counted: Counting) -> list[str]:
        flight = await lead(one, name)
        assert not one._tasks  # no task of its own while it has not asked: a timer
        await asyncio.sleep(0.05)  # the upstream call
        flight.start({"media": "application/json", "headers": {}})
        flight.add(b"{}")
        flight.end(DONE, {"prompt_tokens": 1})
        await settled(one)
        return counted.calls

    assert replicas(redis_url, scenario) == ["lead", "unlead"]
    assert list_keys(redis_url, name) == []  # nothing was published


def test_an_unfollowed_stream_asks_rarely_and_writes_no_list(redis_url: str) -> None:
    """A 0.5 s stream, a chunk every 20 ms: asks at 0.1, 0.3 s after it opened (then 0.7 s,
    past its end); never appends."""
    name = key()

    async def scenario(one: Coalescer, _two: Coalescer, counted: Counting) -> list[str]:
        flight = await lead(one, name)
        flight.start({"media": "text/event-stream", "headers": {}})
        for k in range(25):
            flight.add(b"data: %d\n\n" % k)
            await asyncio.sleep(0.02)
        flight.end(DONE)
        await settled(one)
        return counted.calls

    assert replicas(redis_url, scenario) == ["lead", "wanted", "wanted", "unlead"]
    assert list_keys(redis_url, name) == []


def test_a_follower_that_came_before_the_first_ask_gets_the_flight_at_its_release(
    redis_url: str,
) -> None:
    name = key()

    async def scenario(one: Coalescer, two: Coalescer, counted: Counting) -> tuple[Any, ...]:
        leader = await lead(one, name)
        remote = await follow(two, name)
        reader = asyncio.ensure_future(body(remote))
        leader.start({"media": "application/json", "headers": {"x": "y"}})
        leader.add(b'{"answer": 1}')
        leader.end(DONE, {"prompt_tokens": 2})
        got = await asyncio.wait_for(reader, 5)
        await settled(one)
        return got, remote.state, remote.meta, remote.usage, counted.calls

    got, state, meta, usage, calls = replicas(redis_url, scenario)
    assert (got, state, usage) == (b'{"answer": 1}', DONE, {"prompt_tokens": 2})
    assert meta["headers"] == {"x": "y"}
    assert calls == ["lead", "unlead", "log_append"]  # the whole flight in one append


def test_a_slow_leader_heard_by_its_follower_is_not_lost(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The leader takes longer than LEADER_LOST_S to answer: it asks once per HEARTBEAT_S,
    finds the follower, and heartbeats from then on, so the follower waits for its answer."""
    monkeypatch.setattr(coalesce, "HEARTBEAT_S", 0.1)
    monkeypatch.setattr(coalesce, "LEADER_LOST_S", 0.4)
    name = key()

    async def scenario(one: Coalescer, two: Coalescer, counted: Counting) -> tuple[Any, ...]:
        leader = await lead(one, name)
        remote = await follow(two, name)
        opened = asyncio.ensure_future(remote.opened(time.monotonic() + 10))
        await asyncio.sleep(1.0)  # over twice LEADER_LOST_S
        leader.start({"media": "text/event-stream", "headers": {}})
        leader.add(b"data: 1\n\n")
        leader.end(DONE)
        got = await opened, await asyncio.wait_for(body(remote), 5)
        await settled(one)
        return got, remote.state, counted.calls

    (opened, got), state, calls = replicas(redis_url, scenario)
    assert opened and got == b"data: 1\n\n" and state == DONE
    assert calls[:2] == ["lead", "wanted"] and "log_append" in calls and calls[-1] == "unlead"


def test_a_follower_mid_stream_gets_what_it_missed_then_the_rest(redis_url: str) -> None:
    name = key()

    async def scenario(one: Coalescer, two: Coalescer, counted: Counting) -> tuple[Any, ...]:
        leader = await lead(one, name)
        leader.start({"media": "text/event-stream", "headers": {}})
        for k in range(10):
            leader.add(b"%d," % k)
            await asyncio.sleep(0.02)
        remote = await follow(two, name)
        reader = asyncio.ensure_future(body(remote))
        for k in range(10, 40):
            leader.add(b"%d," % k)
            await asyncio.sleep(0.02)
        leader.end(DONE)
        got = await asyncio.wait_for(reader, 5)
        await settled(one)
        return got, counted.calls

    got, calls = replicas(redis_url, scenario)
    assert got == b"".join(b"%d," % k for k in range(40))
    assert calls.count("wanted") <= 3 and calls[-1] == "unlead"


def test_a_replica_whose_followers_all_left_stops_polling_and_says_so(redis_url: str) -> None:
    """Its poller ends the local flight and takes its follower off the lock's count: the
    leader learns it has nobody left to stream for (core.cache.follow stops on that)."""
    name = key()

    async def scenario(one: Coalescer, two: Coalescer, _counted: Counting) -> tuple[Any, ...]:
        leader = await lead(one, name)
        leader.start({"media": "text/event-stream", "headers": {}})
        remote = await follow(two, name)
        await asyncio.sleep(0.3)  # the leader asked, heard it, publishes
        heard = leader.remote
        remote.leave()
        for _ in range(100):
            leader.add(b"x")  # each append hears the count again
            await asyncio.sleep(0.02)
            if not leader.remote:
                break
        left = leader.remote
        leader.end(DONE)
        await settled(one)
        await settled(two)
        return heard, left, remote.ended, len(two)

    heard, left, ended, flights = replicas(redis_url, scenario)
    assert (heard, left, ended, flights) == (1, 0, True, 0)


def test_a_miss_looks_up_and_takes_the_lock_in_one_call(redis_url: str) -> None:
    """The response cache's lookup and a miss's coalescing lock are one round trip
    (Store.get_or_lead): a leading miss nobody follows makes that call and the release, and a
    request for an entry that exists takes no lock."""
    name = key()
    entry = name.rsplit(":co:", 1)[0]

    async def scenario(one: Coalescer, two: Coalescer, counted: Counting) -> Any:
        token = Coalescer.token()
        found = await counted.get_or_lead(entry, Coalescer.lock_of(name), token, 30)
        assert found == (None, None)  # a miss, and this request holds the lock
        joined = await one.join(name, 30, 1 << 20, (token, None))
        assert joined is not None and joined[1]
        # Another replica's miss finds the lock in the same call, counted as a follower.
        other = await two._store.get_or_lead(entry, Coalescer.lock_of(name), b"t2", 30)  # type: ignore[union-attr]
        assert other == (None, token)
        joined[0].start({"media": "application/json", "headers": {}})
        joined[0].add(b"{}")
        joined[0].end(DONE)
        await settled(one)
        await counted.set(entry, b"stored", 30)
        hit = await counted.get_or_lead(entry, Coalescer.lock_of(name), b"t3", 30)
        return hit, counted.calls

    hit, calls = replicas(redis_url, scenario)
    assert hit == (b"stored", None)
    # The lookup-and-lock, the release (which heard the other replica: the flight in one
    # append), the entry stored, a lookup that found it: never a separate lock call.
    assert calls == ["get_or_lead", "unlead", "log_append", "set", "get_or_lead"]


def test_a_lock_taken_by_a_request_that_then_follows_locally_is_given_back(
    redis_url: str,
) -> None:
    name = key()

    async def scenario(one: Coalescer, _two: Coalescer, counted: Counting) -> Any:
        leader = await lead(one, name)
        # A second request's lookup ran before it saw the local flight: it was counted as
        # a follower of the leader's lock; joining locally takes that count back.
        holder = (await counted.get_or_lead(name + ":entry", Coalescer.lock_of(name), b"x", 30))[1]
        assert holder is not None
        assert await counted.wanted(Coalescer.lock_of(name)) == 1
        joined = await one.join(name, 30, 1 << 20, (b"x", holder))
        assert joined is not None and joined[0] is leader and not joined[1]
        await asyncio.sleep(0.05)
        return await counted.wanted(Coalescer.lock_of(name))

    assert replicas(redis_url, scenario) == 0


def test_a_complete_miss_stores_its_answer_and_releases_its_lock_in_one_call(
    redis_url: str,
) -> None:
    """A leader that has not asked yet hands its lock to the answer's store (Store.set_unlead):
    a complete miss nobody follows is two round trips (lookup and lock; store and release),
    and the entry exists before the lock is gone."""
    name = key()
    entry = name.rsplit(":co:", 1)[0]

    async def scenario(one: Coalescer, _two: Coalescer, counted: Counting) -> Any:
        token = Coalescer.token()
        assert await counted.get_or_lead(entry, Coalescer.lock_of(name), token, 30) == (None, None)
        joined = await one.join(name, 30, 1 << 20, (token, None))
        assert joined is not None and joined[1]
        flight = joined[0]
        lock = one.quiet_lock(flight)
        assert lock == (Coalescer.lock_of(name), token)
        assert one.quiet_lock(flight) is None  # handed over once
        wanted = await counted.set_unlead(entry, b"stored", 30, *lock)
        one.released(flight, wanted)
        flight.start({"media": "application/json", "headers": {}})
        flight.add(b"{}")
        flight.end(DONE)
        await settled(one)
        lock_left = await counted.wanted(Coalescer.lock_of(name))
        return wanted, lock_left, await counted.get(entry), counted.calls

    wanted, lock_left, stored, calls = replicas(redis_url, scenario)
    assert (wanted, lock_left, stored) == (0, 0, b"stored")
    assert calls == ["get_or_lead", "set_unlead", "wanted", "get"]  # no release at the end


def test_a_follower_counted_before_the_store_released_the_lock_gets_the_flight(
    redis_url: str,
) -> None:
    """Another replica's request counted on the lock before the answer's store released it
    gets the whole flight in one append once it ends (and the store answered how many)."""
    name = key()
    entry = name.rsplit(":co:", 1)[0]

    async def scenario(one: Coalescer, two: Coalescer, counted: Counting) -> Any:
        leader = await lead(one, name)
        remote = await follow(two, name)
        reader = asyncio.ensure_future(body(remote))
        lock = one.quiet_lock(leader)
        assert lock is not None
        wanted = await counted.set_unlead(entry, b"stored", 30, *lock)
        one.released(leader, wanted)
        leader.start({"media": "application/json", "headers": {}})
        leader.add(b'{"answer": 2}')
        leader.end(DONE, {"prompt_tokens": 3})
        got = await asyncio.wait_for(reader, 5)
        await settled(one)
        return wanted, got, remote.state, counted.calls

    wanted, got, state, calls = replicas(redis_url, scenario)
    assert (wanted, got, state) == (1, b'{"answer": 2}', DONE)
    assert calls == ["lead", "set_unlead", "log_append"]


def test_a_store_that_failed_leaves_the_release_to_the_end(redis_url: str) -> None:
    """`released(flight, None)`: the store failed, the lock is still held: the leader
    releases it when the flight ends, as without the combined call."""
    name = key()

    async def scenario(one: Coalescer, _two: Coalescer, counted: Counting) -> Any:
        flight = await lead(one, name)
        assert one.quiet_lock(flight) is not None
        one.released(flight, None)
        flight.start({"media": "application/json", "headers": {}})
        flight.add(b"{}")
        flight.end(DONE)
        await settled(one)
        return counted.calls, await counted.wanted(Coalescer.lock_of(name))

    calls, _ = replicas(redis_url, scenario)
    assert calls[:2] == ["lead", "unlead"]
