"""Single-use hop nonces: Store.claim (SET NX with expiry) on memory and Redis, bounded memory,
what Redis being down means, and a replay across two core replicas sharing Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.state.redis_store import RedisStore
from core.state.resilient import ResilientStore
from core.state.store import MemoryStore, Store
from shared.errors import GatewayError
from tests.support import hop_client, raw
from tests.support.net import free_port
from tests.support.stack import Cluster

CHAT = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_claim_is_single_use_until_it_expires(kind: str, redis_url: str) -> None:
    async def scenario() -> list[bool]:
        store: Store = MemoryStore() if kind == "memory" else RedisStore(redis_url)
        key = f"il:hop:test-{kind}-{asyncio.get_running_loop().time()}"
        try:
            first, again = await store.claim(key, 0.2), await store.claim(key, 0.2)
            other = await store.claim(key + "-other", 0.2)
            await asyncio.sleep(0.35)
            return [first, again, other, await store.claim(key, 0.2)]
        finally:
            await store.close()

    assert asyncio.run(scenario()) == [True, False, True, True]


def test_concurrent_claims_admit_exactly_one(redis_url: str) -> None:
    async def scenario() -> list[bool]:
        store = RedisStore(redis_url)
        try:
            key = f"il:hop:race-{asyncio.get_running_loop().time()}"
            return list(await asyncio.gather(*(store.claim(key, 5) for _ in range(50))))
        finally:
            await store.close()

    assert sorted(asyncio.run(scenario())) == [False] * 49 + [True]


def test_memory_claims_stay_bounded_and_never_forget_silently() -> None:
    async def scenario() -> tuple[int, bool, bool, bool]:
        store = MemoryStore(max_claims=100)
        for i in range(250):
            assert await store.claim(f"k{i}", 60)
        size = len(store._claims)
        # k0 was evicted while live: a replay of it (same expiry or earlier) is refused.
        evicted_replay = await store.claim("k0", 59)
        live_replay = await store.claim("k249", 60)
        fresh = await store.claim("new", 61)
        return size, evicted_replay, live_replay, fresh

    assert asyncio.run(scenario()) == (100, False, False, True)


@pytest.mark.parametrize("fail_open", [True, False])
def test_redis_down_follows_the_configured_policy(fail_open: bool) -> None:
    """fail_open: claims fall back to this process's memory (still single-use here);
    fail_closed: 503 state_unavailable, like every shared-state call. Never a 401 or a 500."""

    async def scenario() -> list[bool] | int:
        store = ResilientStore(RedisStore(f"redis://127.0.0.1:{free_port()}/0"), fail_open)
        try:
            return [await store.claim("il:hop:n", 5), await store.claim("il:hop:n", 5)]
        except GatewayError as error:
            assert error.code == "state_unavailable"
            return error.status
        finally:
            await store.close()

    assert asyncio.run(scenario()) == ([True, False] if fail_open else 503)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Cluster]:
    overrides = {"state": {"redis_url": redis_url}}
    running = Cluster(Path(tmp_path_factory.mktemp("hop-cluster")), overrides, 2, 1).start()
    yield running
    running.stop()


def test_a_replay_to_another_replica_is_refused(cluster: Cluster) -> None:
    headers, body = hop_client.signed(cluster.env["INTERLOCK_HOP_SECRET"], CHAT)
    first, second = (
        raw.post(f"http://127.0.0.1:{port}/v1/chat/completions", body, headers=headers)
        for port in cluster.core_ports
    )
    assert first.status == 200, first.body
    assert second.status == 401 and second.json()["error"]["code"] == "invalid_hop_credential"
