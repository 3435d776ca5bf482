"""Prompt-cache affinity's parts (core.cache.affinity, core.routing.ordering, key pools):
the registry's bound, TTL and write rule, in memory and in a real Redis (shared by two
registries as by two replicas, and failing soft when Redis is gone or silent); the tenant-scoped
fingerprint; the holder-first rule of each strategy, and what overrides it; the key pool's
preferred key."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from core.cache import affinity as aff
from core.cache.affinity import Affinities, Ticket, entry_key
from core.pipeline.prompt_cache import cache_key, fingerprint, longest_mark
from core.providers.adapters.base import Capabilities, Target
from core.resilience.key_pools import KeyPool, key_id
from core.resilience.latency import LatencyTracker
from core.routing.ordering import order
from core.routing.registry import Candidate, Route
from core.routing.signals import Demand, Holder, Signals, assess
from core.spend.usage import UsageSplit
from core.state.redis_store import RedisStore
from core.state.store import MemoryStore
from shared.config import ProviderConfig
from shared.errors import FailureClass
from shared.secret import Secret
from tests.support.net import free_port
from tests.support.providers import provider_of

WRITE = UsageSplit(input=5, cache_write_5m=2000)
READ = UsageSplit(input=5, cache_read=2000)
NOTHING = UsageSplit(input=2005)
KEYS = (Secret("sk-one"), Secret("sk-two"), Secret("sk-three"))


def _provider(name: str = "p", keys: tuple[Secret, ...] = KEYS) -> Any:
    return provider_of(ProviderConfig(name, "mock", None, keys, {}, None, False))


def _target(model: str = "a", key: Secret | None = KEYS[0]) -> Target:
    return Target(_provider(), model, key)


def _ticket(name: str = "fp", ttl_s: float = aff.TTL_5M) -> Ticket:
    return Ticket(name, ttl_s)


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


# --- the registry, in memory ---------------------------------------------------------------


def test_a_prefix_written_or_read_is_held_by_that_target_and_key() -> None:
    async def scenario() -> None:
        registry = Affinities()
        assert await registry.lookup(_ticket(), "r") is None
        registry.served(_ticket(), "r", _target("a", KEYS[1]), WRITE)
        found = await registry.lookup(_ticket(), "r")
        assert found == Holder("p/a", key_id(KEYS[1]))
        registry.served(_ticket(), "r", _target("b", KEYS[2]), READ)  # read there: moved
        assert await registry.lookup(_ticket(), "r") == Holder("p/b", key_id(KEYS[2]))
        assert await registry.lookup(_ticket(), "another route") is None
        registry.served(_ticket("other"), "r", _target(), NOTHING)  # no cache use: not held
        assert await registry.lookup(_ticket("other"), "r") is None

    _run(scenario())


def test_the_registry_is_a_bounded_lru() -> None:
    async def scenario() -> None:
        registry = Affinities(max_entries=3)
        for name in ("one", "two", "three"):
            registry.served(_ticket(name), "r", _target(), WRITE)
        assert await registry.lookup(_ticket("one"), "r") is not None  # used: now the newest
        registry.served(_ticket("four"), "r", _target(), WRITE)
        assert len(registry) == 3
        assert await registry.lookup(_ticket("two"), "r") is None  # the least recently used
        for name in ("one", "three", "four"):
            assert await registry.lookup(_ticket(name), "r") is not None

    _run(scenario())


def test_entries_end_with_their_ttl() -> None:
    async def scenario() -> None:
        registry = Affinities()
        registry.served(_ticket("short", 0.05), "r", _target(), WRITE)
        registry.served(_ticket("long", 5.0), "r", _target(), WRITE)
        assert await registry.lookup(_ticket("short"), "r") is not None
        await asyncio.sleep(0.1)
        assert await registry.lookup(_ticket("short"), "r") is None
        assert await registry.lookup(_ticket("long"), "r") is not None
        assert len(registry) == 1  # the expired entry is gone, not kept

    _run(scenario())
    assert aff.ticket("x", long_lived=True).ttl_s == 3600.0
    assert aff.ticket("x", long_lived=False).ttl_s == 300.0


class CountingStore(MemoryStore):
    """A store that counts its writes (the registry's one SET per changed holder)."""

    def __init__(self) -> None:
        super().__init__()
        self.sets = 0
        self.gets = 0

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self.sets += 1
        await super().set(key, value, ttl_s)

    async def get(self, key: str) -> bytes | None:
        self.gets += 1
        return await super().get(key)


def test_a_shared_entry_is_written_only_when_the_holder_changes_or_nears_its_end() -> None:
    async def request(registry: Affinities, target: Target, ttl_s: float = 300.0) -> None:
        ticket = _ticket("fp", ttl_s)
        await registry.lookup(ticket, "r")
        registry.served(ticket, "r", target, READ)
        await asyncio.sleep(0)  # the background write

    async def scenario() -> None:
        store = CountingStore()
        registry = Affinities(store)
        await request(registry, _target("a"))
        await request(registry, _target("a"))
        await request(registry, _target("a"))
        assert (store.gets, store.sets) == (3, 1)
        await request(registry, _target("b"))  # another holder
        assert store.sets == 2
        await request(registry, _target("b", KEYS[1]))  # another key
        assert store.sets == 3
        await request(registry, _target("c"), ttl_s=0.2)  # another holder, a short TTL
        await request(registry, _target("c"), ttl_s=0.2)  # still fresh
        assert store.sets == 4
        await asyncio.sleep(0.12)
        await request(registry, _target("c"), ttl_s=0.2)  # past half its TTL: refreshed
        assert store.sets == 5

    _run(scenario())


# --- the registry in Redis ------------------------------------------------------------------


def test_replicas_share_holders_through_redis(redis_url: str) -> None:
    async def scenario() -> None:
        first, second = RedisStore(redis_url), RedisStore(redis_url)
        one, two = Affinities(first), Affinities(second)
        name = f"fp-{time.time_ns()}"
        assert await two.lookup(_ticket(name), "r") is None
        one.served(_ticket(name), "r", _target("b", KEYS[2]), WRITE)
        await asyncio.sleep(0.05)
        assert await two.lookup(_ticket(name), "r") == Holder("p/b", key_id(KEYS[2]))
        stored = await second.get(entry_key(name, "r"))
        assert stored is not None and b"sk-three" not in stored  # a key id, never the key
        await first.close()
        await second.close()

    _run(scenario())


def test_redis_gone_or_silent_is_no_affinity_never_an_error_nor_a_wait() -> None:
    async def silent_server() -> asyncio.Server:
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1 << 16)
            await asyncio.sleep(5)

        return await asyncio.start_server(hold, "127.0.0.1", 0)

    async def scenario() -> None:
        server = await silent_server()
        port = server.sockets[0].getsockname()[1]
        for url in (f"redis://127.0.0.1:{free_port()}", f"redis://127.0.0.1:{port}"):
            registry = Affinities(RedisStore(url))
            errors = aff.LOOKUPS["error"]
            started = time.monotonic()
            assert await registry.lookup(_ticket(), "r") is None
            assert time.monotonic() - started < aff.LOOKUP_TIMEOUT_S + 0.2
            assert aff.LOOKUPS["error"] == errors + 1
            registry.served(_ticket(), "r", _target(), WRITE)  # resting: nothing sent
            started = time.monotonic()
            assert await registry.lookup(_ticket(), "r") is None
            assert time.monotonic() - started < 0.02  # not asked again while resting
        server.close()

    _run(scenario())


# --- the fingerprint -----------------------------------------------------------------------


def _marked(question: str, system: str = "You answer in numbers. " * 50) -> dict[str, Any]:
    return {
        "model": "m",
        "messages": [
            {"role": "system", "content": system, "cache_control": {"type": "ephemeral"}},
            {"role": "user", "content": question},
        ],
    }


def test_the_fingerprint_is_the_tenant_and_the_stable_prefix() -> None:
    one, two = _marked("What is 2 + 3?"), _marked("And 4 + 4?")
    assert fingerprint(one, "acme") == fingerprint(two, "acme")  # the question is not prefix
    assert fingerprint(one, "acme") != fingerprint(one, "globex")  # tenants never share
    assert fingerprint(one, "acme") != fingerprint(_marked("?", "Other system."), "acme")
    assert cache_key(one, "acme") == fingerprint(one, "acme")  # one hash, reused as the key
    assert cache_key({**one, "prompt_cache_key": "mine"}, "acme") != fingerprint(one, "acme")


def test_the_longest_mark_sets_the_ttl() -> None:
    assert longest_mark({"messages": [{"role": "user", "content": "hi"}]}) is None
    assert longest_mark(_marked("?")) == "5m"
    hour = {"type": "ephemeral", "ttl": "1h"}
    tools = {"tools": [{"type": "function", "cache_control": hour}], "messages": []}
    assert longest_mark(tools) == "1h"
    anthropic = {"system": [{"type": "text", "text": "s", "cache_control": hour}], "messages": []}
    assert longest_mark(anthropic) == "1h"
    part = {"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}
    assert longest_mark({"messages": [{"role": "user", "content": [part]}]}) == "5m"


# --- ordering: the holder first, unless --------------------------------------------------


class Breakers:
    """A breaker board whose open circuits are named."""

    def __init__(self, *open_labels: str) -> None:
        self.open = set(open_labels)

    def retry_after(self, label: str) -> float:
        return 5.0 if label in self.open else 0.0


class Prices:
    """Pricing by model name (micros for any request)."""

    def __init__(self, **micros: int) -> None:
        self.micros = micros

    def estimate(self, target: Target, tokens: int, output: int | None) -> Any:
        return SimpleNamespace(micros=self.micros[target.model], unpriced=False)


def _route(strategy: str, **options: Any) -> Route:
    provider = _provider()
    candidates = tuple(
        Candidate(Target(provider, name, None), object(), Capabilities())  # type: ignore[arg-type]
        for name in ("a", "b", "c")
    )
    return Route("m", candidates, True, True, strategy, (1.0, 1.0, 1.0), **options)


HOLDS_C = Demand(holder=Holder("p/c", ""))


def _draws(route: Route, signals: Signals, demand: Demand = HOLDS_C) -> list[str]:
    rng = random.Random(7)
    return [order(route, signals, rng, demand).candidates[0].target.model for _ in range(300)]


def _firsts(route: Route, signals: Signals, demand: Demand = HOLDS_C) -> set[str]:
    return set(_draws(route, signals, demand))


def _share_of_c(route: Route, signals: Signals) -> float:
    """How often the holder (c) came first: a third when affinity does not move it."""
    return _draws(route, signals).count("c") / 300


@pytest.mark.parametrize("strategy", ["weighted", "latency", "cost"])
def test_the_holder_goes_first_under_weighted_latency_and_cost(strategy: str) -> None:
    signals = Signals(LatencyTracker(), pricing=Prices(a=100, b=100, c=120))  # type: ignore[arg-type]
    assert _firsts(_route(strategy), signals) == {"c"}
    if strategy == "weighted":
        assert _firsts(_route(strategy), signals, Demand()) == {"a", "b", "c"}  # no holder


def test_fallback_keeps_its_order_and_score_weighs_affinity() -> None:
    signals = Signals(LatencyTracker())
    assert _firsts(_route("fallback"), signals) == {"a"}
    views = assess(_route("score"), signals, HOLDS_C)
    assert [v.affinity for v in views] == [0.0, 0.0, 1.0]
    assert _firsts(_route("score"), signals) == {"c"}  # the affinity term wins the tie


def test_an_open_circuit_a_ceiling_or_the_switch_overrides_the_holder() -> None:
    open_c = Signals(LatencyTracker(), Breakers("p/c"))  # type: ignore[arg-type]
    assert 0.2 < _share_of_c(_route("weighted"), open_c) < 0.5  # the weighted draw, as is
    assert _firsts(_route("latency"), open_c) == {"a"}
    latency = LatencyTracker()
    for label, seconds in (("p/a", 0.1), ("p/b", 0.1), ("p/c", 0.9)):
        latency.observe(label, seconds)
    ceiling = _route("weighted", ceiling_s=0.5)
    assert "c" not in _firsts(ceiling, Signals(latency))
    assert 0.2 < _share_of_c(_route("weighted", affinity=False), Signals(LatencyTracker())) < 0.5


def test_a_holder_worse_than_the_margin_is_not_preferred() -> None:
    latency = LatencyTracker()
    for label, seconds in (("p/a", 1.0), ("p/b", 1.0), ("p/c", 1.4)):
        latency.observe(label, seconds)
    assert _firsts(_route("latency"), Signals(latency)) == {"c"}  # 40% slower: within 0.5
    assert _firsts(_route("latency", affinity_margin=0.2), Signals(latency)) == {"a"}
    assert _firsts(_route("weighted", affinity_margin=0.2), Signals(latency)) == {"c"}
    slow = LatencyTracker()
    for label, seconds in (("p/a", 1.0), ("p/b", 1.0), ("p/c", 3.0)):
        slow.observe(label, seconds)
    assert _firsts(_route("latency"), Signals(slow)) == {"a"}
    noise = LatencyTracker()  # milliseconds apart: noise next to what the cache saves
    for label, seconds in (("p/a", 0.004), ("p/b", 0.004), ("p/c", 0.02)):
        noise.observe(label, seconds)
    assert _firsts(_route("latency"), Signals(noise)) == {"c"}
    failing = LatencyTracker()
    for _ in range(10):
        failing.outcome("p/c", failed=True)
    assert _share_of_c(_route("weighted"), Signals(failing)) < 0.2  # drawn, not moved first
    dear = Signals(LatencyTracker(), pricing=Prices(a=100, b=100, c=200))  # type: ignore[arg-type]
    assert _firsts(_route("cost"), dear) == {"a"}


# --- the key pool ---------------------------------------------------------------------------


def test_the_pool_lends_the_holder_key_while_it_is_awake() -> None:
    config = ProviderConfig("p", "mock", None, KEYS, {}, None, False)
    pool, now = KeyPool(config), time.monotonic()
    held = key_id(KEYS[2])
    assert [pool.rotation(now, held)[0] for _ in range(6)] == [KEYS[2]] * 6
    assert {pool.rotation(now)[0] for _ in range(6)} == set(KEYS)  # round robin without
    error = SimpleNamespace(failure_class=FailureClass.RATE_LIMIT, retry_after_s=30.0)
    pool.rest(KEYS[2], error, now)  # type: ignore[arg-type]
    assert KEYS[2] not in {pool.rotation(now, held)[0] for _ in range(6)}
    assert pool.rotation(now, "not-a-key-of-this-pool")[0] in KEYS


def test_the_holder_label_is_the_targets_health_label() -> None:
    target = replace(_target("x"), dynamic=True)
    assert Signals().affinity(target, Demand(holder=Holder("p/*", ""))) == 1.0
    assert Signals().affinity(_target("x"), Demand(holder=Holder("p/y", ""))) == 0.0
