"""Budget settlements of draws from one slice go to the store as one charge (core.budgets.settle
`merged`), on a real Redis: the spend settles exactly, the script gets one charge where it got
one per request, and a batch that failed after it landed is resent unchanged (counted once)."""

from __future__ import annotations

import asyncio
import uuid
from collections import deque

import redis

from core.budgets.enforce import Budgets
from core.budgets.settle import Settlement, merged
from core.state.budget_accounts import Account, BudgetCharge
from shared.config import BudgetConfig
from tests.test_budget_slices import ASK, TARGET, CountingStore, account_of
from tests.test_budget_slices import replica as slices_replica


class RecordingStore(CountingStore):
    """The Redis store, recording the charges of each settle call; `lose` calls land in Redis
    and then fail as if the reply were lost."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.calls: list[list[BudgetCharge]] = []
        self.lose = 0

    async def budget_settle(self, charges: list[BudgetCharge], ttl_s: float) -> dict[str, int]:
        self.calls.append(charges)
        spent = await super().budget_settle(charges, ttl_s)
        if self.lose:
            self.lose -= 1
            raise ConnectionError("reply lost")
        return spent


def replica(redis_url: str, budget: BudgetConfig) -> tuple[Budgets, RecordingStore]:
    store = RecordingStore(redis_url)
    budgets, _ = slices_replica(redis_url, budget, store)
    return budgets, store


async def draw_and_settle(budgets: Budgets, count: int, micros: int) -> None:
    for _ in range(count):
        hold = await budgets.reserve(ASK, TARGET, None)
        assert hold is not None
        hold.settle_cost(micros, 10)


def test_draws_from_one_slice_settle_as_one_charge(redis_url: str, sync_redis: redis.Redis) -> None:
    budget = BudgetConfig(f"merge-{uuid.uuid4().hex[:6]}", 10**9)

    async def main() -> list[list[BudgetCharge]]:
        budgets, store = replica(redis_url, budget)
        await draw_and_settle(budgets, 20, 300)  # the first reserves (and takes a slice)
        await budgets.settler.flush()
        await budgets.settler.stop()
        await store.close()
        return store.calls

    calls = asyncio.run(main())
    charges = calls[0]
    assert len(charges) == 2  # the first request's own hold, then its 19 draws as one
    assert charges[1].rid.endswith("+19") and charges[1].cost == 19 * 300
    held = account_of(sync_redis, budget.name)
    assert int(held[b"s"]) == 20 * 300 and int(held[b"k"]) == 20 * 10
    assert int(held[b"r"]) == 0 and int(held[b"q"]) == 0


def test_a_batch_that_landed_but_failed_is_resent_unchanged_and_counted_once(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    budget = BudgetConfig(f"retry-{uuid.uuid4().hex[:6]}", 10**9)

    async def main() -> list[list[BudgetCharge]]:
        budgets, store = replica(redis_url, budget)
        await draw_and_settle(budgets, 10, 300)
        store.lose = 1
        await budgets.settler.flush()  # lands in Redis, reported failed: kept to resend
        await draw_and_settle(budgets, 5, 300)  # new draws of the same slice meanwhile
        await budgets.settler.flush()
        await budgets.settler.stop()
        await store.close()
        return store.calls

    calls = asyncio.run(main())
    first, again = calls[0], calls[1]
    assert [c.rid for c in again[: len(first)]] == [c.rid for c in first]  # resent as it was
    assert [c.cost for c in again[len(first) :]] == [5 * 300]  # the new draws: one charge
    held = account_of(sync_redis, budget.name)
    assert int(held[b"s"]) == 15 * 300  # the resent batch counted once


def test_merged_keeps_own_holds_and_give_backs_and_groups_by_slice_and_accounts() -> None:
    budget = BudgetConfig("b", 10**9)
    one, two = Account("il:{budgets}:b:1", 0.0, 0), Account("il:{budgets}:c:1", 0.0, 0)

    def settlement(rid: str, slice_id: str, accounts: tuple[Account, ...], cost: int) -> Settlement:
        charge = BudgetCharge(rid, cost, 1, accounts, slice_id, cost, 1)
        return Settlement(charge, (budget,) * len(accounts), ())

    own = Settlement(BudgetCharge("own", 5, 1, (one,)), (budget,), ())
    give_back = Settlement(BudgetCharge("back", 0, 0, (one,), "s1", 70, 0), (), ())
    pending = deque(
        [
            settlement("a", "s1", (one,), 1),
            own,
            settlement("b", "s1", (one, two), 2),
            settlement("c", "s1", (one,), 4),
            give_back,
            settlement("d", "s2", (one,), 8),
            settlement("e", "s1", (one, two), 16),
        ]
    )
    out = merged(pending)
    assert [(s.charge.rid, s.charge.cost, s.charge.drawn) for s in out] == [
        ("a+2", 5, 5),
        ("own", 5, 0),
        ("b+2", 18, 18),
        ("back", 0, 70),
        ("d", 8, 8),
    ]
