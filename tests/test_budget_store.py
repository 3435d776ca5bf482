"""Budget reserve-then-settle, the same contract on the Redis script (a real redis-server) and
on the in-memory store: all-or-nothing reservations, warn lines that never refuse, idempotent
settlement, reservations that expire on their own, token caps."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest

from core.state.budget_accounts import BudgetLine
from core.state.redis_store import RedisStore
from core.state.store import MemoryStore, Store

Scenario = Callable[[Store], Awaitable[None]]


@pytest.fixture(params=["memory", "redis"])
def on_store(request: pytest.FixtureRequest, redis_url: str) -> Callable[[Scenario], None]:
    """Runs a scenario against a fresh store of the kind under test."""

    def run(scenario: Scenario) -> None:
        async def main() -> None:
            store: Store = MemoryStore() if request.param == "memory" else RedisStore(redis_url)
            try:
                await scenario(store)
            finally:
                await store.close()

        asyncio.run(main())

    return run


def line(key: str, limit: int, cost: int, enforce: bool = True, **kw: int) -> BudgetLine:
    expire_at = time.time() + 3600
    return BudgetLine(
        key, limit, kw.get("limit_tokens", 0), cost, kw.get("tokens", 0), enforce, expire_at
    )


def account() -> str:
    return f"il:{{budgets}}:test-{uuid.uuid4().hex[:8]}:p"


def test_reserves_until_the_limit_then_refuses(on_store: Callable[[Scenario], None]) -> None:
    async def scenario(store: Store) -> None:
        key = account()
        assert (await store.budget_reserve([line(key, 1000, 400)], "a", 60)).refused == -1
        assert (await store.budget_reserve([line(key, 1000, 600)], "b", 60)).used == (1000,)
        refused = await store.budget_reserve([line(key, 1000, 1)], "c", 60)
        assert refused.refused == 0 and refused.used == (1000,)

    on_store(scenario)


def test_all_or_nothing_over_lines_and_warn_never_refuses(
    on_store: Callable[[Scenario], None],
) -> None:
    async def scenario(store: Store) -> None:
        roomy, tight, warn = account(), account(), account()
        await store.budget_reserve([line(tight, 100, 90)], "x", 60)
        reply = await store.budget_reserve(
            [line(roomy, 1000, 50), line(tight, 100, 50), line(warn, 10, 50, enforce=False)],
            "y",
            60,
        )
        assert reply.refused == 1
        # Nothing was reserved on the roomy line: the whole of it is still there.
        assert (await store.budget_reserve([line(roomy, 1000, 1000)], "z", 60)).refused == -1
        over = await store.budget_reserve([line(warn, 10, 50, enforce=False)], "w", 60)
        assert over.refused == -1 and over.used == (50,)

    on_store(scenario)


def test_settle_replaces_the_hold_once(on_store: Callable[[Scenario], None]) -> None:
    async def scenario(store: Store) -> None:
        key = account()
        expire = time.time() + 3600
        await store.budget_reserve([line(key, 1000, 800)], "r1", 60)
        assert await store.budget_settle([(key, expire)], "r1", 300, 10, 60) == (300,)
        assert await store.budget_settle([(key, expire)], "r1", 300, 10, 60) == (300,)  # idempotent
        assert (await store.budget_reserve([line(key, 1000, 700)], "r2", 60)).refused == -1
        assert (await store.budget_reserve([line(key, 1000, 1)], "r3", 60)).refused == 0

    on_store(scenario)


def test_a_hold_expires_on_its_own_and_a_late_settle_still_counts(
    on_store: Callable[[Scenario], None],
) -> None:
    async def scenario(store: Store) -> None:
        key = account()
        expire = time.time() + 3600
        await store.budget_reserve([line(key, 1000, 1000)], "dies", 0.2)
        assert (await store.budget_reserve([line(key, 1000, 1)], "waits", 60)).refused == 0
        await asyncio.sleep(0.4)
        assert (await store.budget_reserve([line(key, 1000, 500)], "after", 60)).refused == -1
        # The core that held "dies" settles after all: what was spent is counted, once.
        assert await store.budget_settle([(key, expire)], "dies", 200, 0, 60) == (200,)
        assert (await store.budget_reserve([line(key, 1000, 301)], "over", 60)).refused == 0

    on_store(scenario)


def test_token_caps(on_store: Callable[[Scenario], None]) -> None:
    async def scenario(store: Store) -> None:
        key = account()
        first = line(key, 10**9, 1, limit_tokens=100, tokens=60)
        assert (await store.budget_reserve([first], "t1", 60)).refused == -1
        assert (await store.budget_reserve([first], "t2", 60)).refused == 0
        await store.budget_settle([(key, first.expire_at)], "t1", 1, 20, 60)
        assert (await store.budget_reserve([first], "t3", 60)).refused == -1

    on_store(scenario)


def test_large_amounts_stay_exact(on_store: Callable[[Scenario], None]) -> None:
    async def scenario(store: Store) -> None:
        key = account()
        limit = 10**15
        reply = await store.budget_reserve([line(key, limit, limit - 1)], "big", 60)
        assert reply.refused == -1 and reply.used == (limit - 1,)
        assert await store.budget_settle([(key, time.time() + 60)], "big", limit - 3, 0, 60) == (
            limit - 3,
        )

    on_store(scenario)
