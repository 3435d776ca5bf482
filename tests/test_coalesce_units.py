"""core.cache.coalesce's flights and registry, without HTTP: two Coalescers sharing one store
stand for two core replicas (the store contract itself is checked on memory and Redis in
tests/test_store.py)."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import pytest

from core.cache import coalesce
from core.cache.coalesce import CUT, DONE, RETRY, Coalescer, Flight
from core.state.store import MemoryStore
from shared.config_cache import parse_cache
from shared.configparse import ConfigError
from tests.support.collector import collector_off


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def drain(flight: Flight, idle_s: float = 5.0) -> bytes:
    return b"".join([chunk async for chunk in flight.read(idle_s)])


def test_a_replicas_follower_reads_the_leaders_flight_from_its_start() -> None:
    async def scenario() -> tuple[Any, ...]:
        store = MemoryStore()
        one, two = Coalescer(store), Coalescer(store)
        joined = await one.join("k", 10, 1 << 20)
        assert joined is not None
        leader, leading = joined
        leader.start({"media": "text/event-stream", "headers": {}})
        leader.add(b"data: 1\n\n")
        await asyncio.sleep(0.1)  # published before the other replica's request arrives
        followed = await two.join("k", 10, 1 << 20)
        again = await two.join("k", 10, 1 << 20)  # a second follower there: the same flight
        assert followed is not None and again is not None
        remote = followed[0]
        reader = asyncio.ensure_future(drain(remote))
        leader.add(b"data: 2\n\n")
        leader.end(DONE, {"prompt_tokens": 3})
        body = await reader
        return leading, followed[1], again[0] is remote, remote.meta, body, remote.usage

    leading, following, same, meta, body, usage = run(scenario())
    assert leading and not following and same
    assert meta["media"] == "text/event-stream"
    assert body == b"data: 1\n\ndata: 2\n\n"
    assert usage == {"prompt_tokens": 3}


def test_followers_run_again_when_the_leader_ends_without_answering() -> None:
    async def scenario() -> tuple[bool, tuple[Flight, bool] | None]:
        coalescer = Coalescer(None)
        joined = await coalescer.join("k", 10, 1 << 20)
        assert joined is not None
        follower = await coalescer.join("k", 10, 1 << 20)
        assert follower is not None and not follower[1]
        waiting = asyncio.ensure_future(follower[0].opened(time.monotonic() + 5))
        joined[0].abandon()  # the leader's request ended: an error, its client left
        opened = await waiting
        return opened, await coalescer.join("k", 10, 1 << 20)

    opened, rejoined = run(scenario())
    assert not opened
    assert rejoined is not None and rejoined[1]  # a new leader


def test_a_lost_remote_leader_lets_followers_run_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(coalesce, "LEADER_LOST_S", 0.2)

    async def scenario() -> str:
        store = MemoryStore()
        await store.lead("k:leader", b"gone", 10)  # a replica that took the lead and died
        joined = await Coalescer(store).join("k", 10, 1 << 20)
        assert joined is not None and not joined[1]
        await joined[0].opened(time.monotonic() + 5)
        return joined[0].state

    assert run(scenario()) == RETRY


@pytest.mark.parametrize("shared", [True, False])
def test_an_ended_flight_leaves_no_cycle_for_the_collector(shared: bool) -> None:
    """Every cache miss leads a flight; its hooks (`on_end`, `ask`) are closures that hold it.
    Kept past its end they made it a cycle, ~11 objects a miss waiting for a full collection
    (the core's memory crept under the response cache's load)."""

    async def scenario() -> None:
        coalescer = Coalescer(MemoryStore() if shared else None)
        for number in range(5):
            joined = await coalescer.join(f"k{number}", 10, 1 << 20)
            assert joined is not None and joined[1]
            flight = joined[0]
            flight.start({"media": "text/event-stream", "headers": {}})
            flight.add(b"data: 1\n\n")
            flight.end(DONE, {"prompt_tokens": 3})
        await asyncio.sleep(0.05)  # the lock's release, a task of its own

    with collector_off():
        run(scenario())
        assert sum(1 for o in gc.get_objects() if type(o) is Flight) == 0


def test_the_registry_is_bounded() -> None:
    async def scenario() -> list[bool]:
        coalescer = Coalescer(None, max_flights=2)
        return [await coalescer.join(k, 10, 1 << 20) is not None for k in ("a", "b", "c")]

    assert run(scenario()) == [True, True, False]


def test_a_flight_too_large_to_hold_is_cut() -> None:
    async def scenario() -> str:
        flight = Flight(max_bytes=10)
        flight.start({})
        flight.add(b"0123456789")
        flight.add(b"x")
        return flight.state

    assert run(scenario()) == CUT


def test_a_reader_stops_after_the_idle_timeout_not_at_a_deadline() -> None:
    """A long stream is followed as long as chunks keep coming; silence ends the read."""

    async def scenario() -> tuple[bytes, str]:
        flight = Flight(max_bytes=1 << 20)
        flight.start({})

        async def leader() -> None:
            for k in range(5):
                flight.add(b"%d" % k)
                await asyncio.sleep(0.1)  # 0.5 s in all, each gap under the idle timeout

        writing = asyncio.ensure_future(leader())
        body = await drain(flight, idle_s=0.3)
        await writing
        return body, flight.state

    assert run(scenario()) == (b"01234", "open")  # read whole, then silence: not ended


def test_coalesce_config_merges_and_names_bad_keys() -> None:
    config = parse_cache(
        {"enabled": True, "tenants": {"solo": {"coalesce": False}}, "models": {"m": {}}},
        frozenset({"m"}),
        None,
    )
    assert config.policy("acme", "r", "m").coalesce  # on where the cache is
    assert not config.policy("solo", "r", "m").coalesce
    off = parse_cache({"enabled": False, "coalesce": True}, frozenset(), None)
    assert not off.policy("acme", "r", "m").coalesce  # never where the cache is off
    with pytest.raises(ConfigError, match=r"cache\.tenants\.t\.coalesce"):
        parse_cache({"tenants": {"t": {"coalesce": "yes"}}}, frozenset(), None)
    with pytest.raises(ConfigError, match=r"cache\.coalesce"):
        parse_cache({"coalesce": 3}, frozenset(), None)
