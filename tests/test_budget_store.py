"""Budget reserve-then-settle, the same contract on the Redis script (a real redis-server) and
on the in-memory store: all-or-nothing reservations, warn lines that never refuse, idempotent
settlement, reservations that expire on their own, token caps."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest

from core.state.budget_accounts import Account, BudgetCharge, BudgetLine
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
    where = Account(key, time.time() + 3600, kw.get("slot_ms", 0))
    return BudgetLine(where, limit, kw.get("limit_tokens", 0), cost, kw.get("tokens", 0), enforce)


async def settle(
    store: Store, key: str, rid: str, cost: int, tokens: int = 0, slot_ms: int = 0
) -> int:
    """Settles one reservation on one account: the account's settled spend."""
    charge = BudgetCharge(rid, cost, tokens, (Account(key, time.time() + 3600, slot_ms),))
    return (await store.budget_settle([charge], 60))[key]


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
        await store.budget_reserve([line(key, 1000, 800)], "r1", 60)
        assert await settle(store, key, "r1", 300, 10) == 300
        assert await settle(store, key, "r1", 300, 10) == 300  # idempotent
        assert (await store.budget_reserve([line(key, 1000, 700)], "r2", 60)).refused == -1
        assert (await store.budget_reserve([line(key, 1000, 1)], "r3", 60)).refused == 0

    on_store(scenario)


def test_a_hold_expires_on_its_own_and_a_late_settle_still_counts(
    on_store: Callable[[Scenario], None],
) -> None:
    async def scenario(store: Store) -> None:
        key = account()
        await store.budget_reserve([line(key, 1000, 1000)], "dies", 0.2)
        assert (await store.budget_reserve([line(key, 1000, 1)], "waits", 60)).refused == 0
        await asyncio.sleep(0.4)
        assert (await store.budget_reserve([line(key, 1000, 500)], "after", 60)).refused == -1
        # The core that held "dies" settles after all: what was spent is counted, once.
        assert await settle(store, key, "dies", 200) == 200
        assert (await store.budget_reserve([line(key, 1000, 301)], "over", 60)).refused == 0

    on_store(scenario)


def test_token_caps(on_store: Callable[[Scenario], None]) -> None:
    async def scenario(store: Store) -> None:
        key = account()
        first = line(key, 10**9, 1, limit_tokens=100, tokens=60)
        assert (await store.budget_reserve([first], "t1", 60)).refused == -1
        assert (await store.budget_reserve([first], "t2", 60)).refused == 0
        await settle(store, key, "t1", 1, 20)
        assert (await store.budget_reserve([first], "t3", 60)).refused == -1

    on_store(scenario)


def test_large_amounts_stay_exact(on_store: Callable[[Scenario], None]) -> None:
    async def scenario(store: Store) -> None:
        key = account()
        limit = 10**15
        reply = await store.budget_reserve([line(key, limit, limit - 1)], "big", 60)
        assert reply.refused == -1 and reply.used == (limit - 1,)
        assert await settle(store, key, "big", limit - 3) == limit - 3

    on_store(scenario)


def test_one_call_settles_a_batch_once_per_id(on_store: Callable[[Scenario], None]) -> None:
    async def scenario(store: Store) -> None:
        a, b = account(), account()
        both = (Account(a, time.time() + 3600), Account(b, time.time() + 3600))
        await store.budget_reserve([line(a, 1000, 400), line(b, 1000, 400)], "x", 60)
        charges = [
            BudgetCharge("x", 100, 0, both),
            BudgetCharge("y", 30, 0, both[1:]),
            BudgetCharge("x", 100, 0, both),  # a repeat in the same batch counts once
        ]
        assert await store.budget_settle(charges, 60) == {a: 100, b: 130}
        # The hold of "x" is gone from both accounts: 900 and 870 of room are left.
        assert (await store.budget_reserve([line(a, 1000, 900)], "p", 60)).refused == -1
        assert (await store.budget_reserve([line(b, 1000, 871)], "q", 60)).refused == 0

    on_store(scenario)


SLOT_MS = 25  # a rolling window of 60 slots: 1.5 s


def test_a_rolling_window_forgets_spend_once_it_ages_out(
    on_store: Callable[[Scenario], None],
) -> None:
    async def scenario(store: Store) -> None:
        key = account()
        assert await settle(store, key, "old", 600, slot_ms=SLOT_MS) == 600
        await asyncio.sleep(0.9)
        assert await settle(store, key, "new", 300, slot_ms=SLOT_MS) == 900
        # Both still count: 100 of room.
        reply = await store.budget_reserve([line(key, 1000, 101, slot_ms=SLOT_MS)], "a", 60)
        assert reply.refused == 0 and reply.used == (900,)
        await asyncio.sleep(0.75)  # "old" is 1.65 s old (out), "new" 0.75 s (in)
        reply = await store.budget_reserve([line(key, 1000, 700, slot_ms=SLOT_MS)], "b", 60)
        assert reply.refused == -1 and reply.used == (1000,)
        await asyncio.sleep(1.6)  # everything settled has aged out; the hold "b" stays
        assert await settle(store, key, "b", 50, slot_ms=SLOT_MS) == 50

    on_store(scenario)
