"""Budget slices (core.budgets.slices) on a real Redis: most reservations are drawn from the
replica's slice with no store call, spend is settled exactly, spare room goes back, and two
replicas sharing a small budget neither overshoot it nor refuse early beyond the stated bound."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace

import pytest
import redis

from core.budgets.alerts import Alerts
from core.budgets.ask import BudgetAsk
from core.budgets.enforce import BudgetHold, Budgets
from core.budgets.levels import BudgetLevels
from core.budgets.settle import BudgetSettler
from core.budgets.slices import SLICE_DRAWS, SLICE_WINDOW_S
from core.providers.adapters.base import ProviderError, Target
from core.spend.images import requested_images
from core.state.budget_accounts import SLICE_SHARE, BudgetLine, BudgetReply
from core.state.redis_store import RedisStore
from shared.config import BudgetConfig, ProviderConfig
from tests.support.flat_pricing import IMAGE_MICROS, FlatPricing
from tests.support.providers import provider_of

MOCK = ProviderConfig("mock", "openai", None, ("k",), {}, None, allow_any_model=True)
TARGET = Target(provider_of(MOCK), "mock-1", "k")
# mock-1 costs 1 micro-dollar per input token and 4 per output token (tests/support/flat_pricing).
ASK = BudgetAsk("acme", (), "mock-1", 100, 100, 200, "r")
ESTIMATE = 100 * 1 + 100 * 4


class CountingStore(RedisStore):
    """The Redis store, counting reservation calls."""

    reserves = 0

    async def budget_reserve(self, lines: list[BudgetLine], rid: str, ttl_s: float) -> BudgetReply:
        self.reserves += 1
        return await super().budget_reserve(lines, rid, ttl_s)


def replica(
    redis_url: str, budget: BudgetConfig, store: CountingStore | None = None
) -> tuple[Budgets, CountingStore]:
    """A core's budgets on `store` (default: a new CountingStore)."""
    store = store or CountingStore(redis_url)
    settler = BudgetSettler(store, Alerts(store), BudgetLevels([budget]))
    return Budgets([budget], store, FlatPricing(), settler), store


def account_of(client: redis.Redis, name: str) -> dict[bytes, bytes]:
    keys = [k for k in client.scan_iter(f"il:{{budgets}}:{name}:*") if not k.endswith(b":x")]
    assert len(keys) == 1
    return client.hgetall(keys[0])  # type: ignore[return-value]


def settle(hold: BudgetHold | None, micros: int) -> None:
    assert hold is not None
    hold.settle_cost(micros, 150)


def test_most_reservations_need_no_store_call_and_spend_settles_exactly(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    budget = BudgetConfig(f"roomy-{uuid.uuid4().hex[:6]}", 10**9)

    async def main() -> None:
        budgets, store = replica(redis_url, budget)
        for n in range(200):
            hold = await budgets.reserve(ASK, TARGET, None)
            settle(hold, 300 + n)
            assert hold is not None and hold.headers["x-interlock-budget"] == budget.name
        # One call per slice of SLICE_DRAWS estimates (the first request's own, then a
        # slice each time the last runs out).
        assert store.reserves <= 200 // SLICE_DRAWS + 2
        await budgets.settler.stop()
        await store.close()

    asyncio.run(main())
    held = account_of(sync_redis, budget.name)
    assert int(held[b"s"]) == sum(300 + n for n in range(200))
    assert int(held[b"r"]) == 0 and int(held[b"q"]) == 0  # every slice given back on stop
    assert not [k for k in held if k.startswith(b"h:")]


def test_a_slice_gone_unused_is_given_back_by_the_next_batch(
    redis_url: str, sync_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    budget = BudgetConfig(f"idle-{uuid.uuid4().hex[:6]}", 10**9)

    async def main() -> None:
        budgets, store = replica(redis_url, budget)
        settle(await budgets.reserve(ASK, TARGET, None), 300)
        await budgets.settler.flush()
        assert int(account_of(sync_redis, budget.name)[b"r"]) == SLICE_DRAWS * ESTIMATE
        later = budgets.settler.slices.sweep(1e12 + SLICE_WINDOW_S)  # as if the window ended
        assert [c.drawn for c in later] == [SLICE_DRAWS * ESTIMATE]
        for charge in later:
            await store.budget_settle([charge], 60)
        await store.close()

    asyncio.run(main())
    held = account_of(sync_redis, budget.name)
    assert int(held[b"s"]) == 300 and int(held[b"r"]) == 0


def test_near_the_limit_every_request_asks_the_store(redis_url: str) -> None:
    # Room for 20 estimates: a slice holds at most 1/16 of the room left, which soon covers
    # less than one estimate; from then on each request reserves through the store.
    budget = BudgetConfig(f"tight-{uuid.uuid4().hex[:6]}", 20 * ESTIMATE)

    async def main() -> None:
        budgets, store = replica(redis_url, budget)
        admitted = 0
        with pytest.raises(ProviderError) as refused:
            while True:
                settle(await budgets.reserve(ASK, TARGET, None), ESTIMATE)
                admitted += 1
        assert refused.value.status == 429
        assert admitted == 20  # one replica: never refused early, never over
        assert store.reserves >= 20 - 20 // SLICE_SHARE
        await budgets.settler.stop()
        await store.close()

    asyncio.run(main())


def test_two_replicas_neither_overshoot_nor_refuse_early_beyond_the_bound(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    limit = 400 * ESTIMATE
    budget = BudgetConfig(f"shared-{uuid.uuid4().hex[:6]}", limit)

    async def run(budgets: Budgets) -> int:
        spent = 0
        while True:
            try:
                hold = await budgets.reserve(ASK, TARGET, None)
            except ProviderError:
                return spent
            await asyncio.sleep(0)
            settle(hold, ESTIMATE)
            spent += ESTIMATE

    async def main() -> list[int]:
        replicas = [replica(redis_url, budget) for _ in range(2)]
        spent = await asyncio.gather(*(run(b) for b, _ in replicas))
        for budgets, store in replicas:
            await budgets.settler.stop()
            await store.close()
        return list(spent)

    spent = asyncio.run(main())
    settled = int(account_of(sync_redis, budget.name)[b"s"])
    assert settled == sum(spent) <= limit
    # Refused early by at most the other replica's slice: under 1/16 of the room it was
    # granted from, and that room is what was left when the refused request asked.
    assert limit - settled < ESTIMATE + limit // SLICE_SHARE


def test_an_images_request_reserves_its_images_not_zero(redis_url: str) -> None:
    """A budget reserves what an images request asks for before the call (its `n` images,
    priced like the answer), so one that cannot afford them is refused upfront."""
    budget = BudgetConfig(f"images-{uuid.uuid4().hex[:6]}", 2 * IMAGE_MICROS)
    three = replace(ASK, input_tokens=0, max_output_tokens=0, units=requested_images({"n": 3}))
    two = replace(three, units=requested_images({"n": 2}))

    async def main() -> tuple[int, int | None]:
        budgets, store = replica(redis_url, budget)
        try:
            with pytest.raises(ProviderError) as refused:
                await budgets.reserve(three, TARGET, None)
            hold = await budgets.reserve(two, TARGET, None)
            return refused.value.status, None if hold is None else hold.estimate
        finally:
            await budgets.settler.stop()
            await store.close()

    status, reserved = asyncio.run(main())
    assert status == 429
    assert reserved == 2 * IMAGE_MICROS
