"""Budget reserve-then-settle, the same contract on the Redis script (a real redis-server) and
on the in-memory store: all-or-nothing reservations, warn lines that never refuse, idempotent
settlement, reservations that expire on their own, token caps."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest

from core.state.budget_accounts import Account, BudgetCharge, BudgetLine, Slice
from core.state.store import Store
from tests.support.redis_cluster import store_of

Scenario = Callable[[Store], Awaitable[None]]


@pytest.fixture(params=["memory", "redis", "cluster"])
def on_store(request: pytest.FixtureRequest) -> Callable[[Scenario], None]:
    """Runs a scenario against a fresh store of the kind under test."""

    def run(scenario: Scenario) -> None:
        async def main() -> None:
            store = store_of(request.param, request)
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


def sliced(key: str, limit: int, cost: int, want: int, spare: int = 0, **kw: int) -> BudgetLine:
    """A line that also asks for (and gives back to) the replica's slice "s1"."""
    base = line(key, limit, cost, **kw)
    ask = Slice("s1", spare, kw.get("spare_tokens", 0), want, kw.get("want_tokens", 0))
    return BudgetLine(
        base.account, base.limit, base.limit_tokens, base.cost, base.tokens, True, ask
    )


def test_a_slice_is_granted_within_its_share_of_the_room_and_counts_as_used(
    on_store: Callable[[Scenario], None],
) -> None:
    async def scenario(store: Store) -> None:
        key = account()
        # 1600 of room after the 100 reserved: at most 1/16 of it (93), asked for 3200.
        reply = await store.budget_reserve([sliced(key, 1600 + 100, 100, 3200)], "a", 60)
        assert reply.refused == -1 and reply.granted == ((100, 0),)
        assert reply.used == (200,)  # the hold and the slice are both reserved
        # Asked for less than the share: granted as asked.
        reply = await store.budget_reserve([sliced(key, 1700, 10, 20, spare=0)], "b", 60)
        assert reply.granted == ((20, 0),) and reply.used == (230,)
        # Too little room for a slice of at least one more such request: none.
        reply = await store.budget_reserve([sliced(key, 1700, 1000, 32000)], "c", 60)
        assert reply.refused == -1 and reply.granted == ((0, 0),) and reply.used == (1230,)
        # The slice (120) counts against the limit like any reservation.
        refused = await store.budget_reserve([line(key, 1700, 471)], "d", 60)
        assert refused.refused == 0 and refused.used == (1230,)

    on_store(scenario)


def test_spare_room_goes_back_first_even_when_the_call_is_refused(
    on_store: Callable[[Scenario], None],
) -> None:
    async def scenario(store: Store) -> None:
        key = account()
        reply = await store.budget_reserve([sliced(key, 10_000, 100, 500)], "a", 60)
        assert reply.granted == ((500, 0),) and reply.used == (600,)
        # 9,500 left: 9,401 does not fit with the slice held, fits once its spare is back.
        refused = await store.budget_reserve([line(key, 10_000, 9_401)], "b", 60)
        assert refused.refused == 0
        back = await store.budget_reserve([sliced(key, 10_000, 9_401, 0, spare=500)], "c", 60)
        assert back.refused == -1 and back.used == (100 + 9_401,)
        # A refused call gives its spare back too (the replica dropped it already).
        key2 = account()
        await store.budget_reserve([sliced(key2, 10_000, 100, 500)], "d", 60)
        over = await store.budget_reserve([sliced(key2, 10_000, 9_999, 0, spare=500)], "e", 60)
        assert over.refused == 0 and over.used == (100,)

    on_store(scenario)


def test_a_draw_settles_against_the_slice_once(on_store: Callable[[Scenario], None]) -> None:
    async def scenario(store: Store) -> None:
        key = account()
        where = (Account(key, time.time() + 3600),)
        ask = sliced(key, 100_000, 100, 3_000, tokens=5, want_tokens=150)
        reply = await store.budget_reserve([ask], "a", 60)
        assert reply.granted == ((3_000, 150),)
        # Two requests drew 100 each from the slice; one used 70, the other failed (0).
        drawn = [
            BudgetCharge("d1", 70, 4, where, "s1", 100, 5),
            BudgetCharge("d2", 0, 0, where, "s1", 100, 5),
            BudgetCharge("d1", 70, 4, where, "s1", 100, 5),  # a repeat: counted once
        ]
        assert await store.budget_settle(drawn, 60) == {key: 70}
        # Held now: "a" (100) and the slice less its two draws (2,800); settled 70.
        refused = await store.budget_reserve([line(key, 100_000, 100_000 - 2_969)], "x", 60)
        assert refused.refused == 0 and refused.used == (70 + 100 + 2_800,)
        # The spare of the slice back with nothing drawn: only "a" and the 70 remain.
        back = BudgetCharge("r1", 0, 0, where, "s1", 2_800, 140)
        assert await store.budget_settle([back], 60) == {key: 70}
        fits = await store.budget_reserve([line(key, 100_000, 100_000 - 170)], "y", 60)
        assert fits.refused == -1

    on_store(scenario)


def test_token_slices_keep_to_the_token_cap(on_store: Callable[[Scenario], None]) -> None:
    async def scenario(store: Store) -> None:
        key = account()
        ask = sliced(key, 10**9, 1, 64, limit_tokens=1_610, tokens=10, want_tokens=640)
        reply = await store.budget_reserve([ask], "a", 60)
        assert reply.granted == ((64, 100),)  # (1,610 - 10) / 16 tokens, under the 640 asked
        assert (
            await store.budget_reserve(
                [line(key, 10**9, 1, limit_tokens=1_610, tokens=1_501)], "b", 60
            )
        ).refused == 0

    on_store(scenario)
