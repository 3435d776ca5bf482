"""The same Store contract on both implementations, plus token-bucket properties."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.state.buckets import BucketSpec, adjust, take
from core.state.store import Store
from tests.support.redis_cluster import store_of

Scenario = Callable[[Store], Awaitable[Any]]
Runner = Callable[[Scenario], Any]


@pytest.fixture(params=["memory", "redis", "cluster"])
def run(request: pytest.FixtureRequest) -> Runner:
    """Runs a scenario against a fresh store inside its own event loop (redis clients are
    bound to the loop that created them)."""

    def runner(scenario: Scenario) -> Any:
        async def main() -> Any:
            store = store_of(request.param, request)
            try:
                return await scenario(store)
            finally:
                await store.close()

        return asyncio.run(main())

    return runner


def unique(name: str) -> str:
    """A key of its own hash tag; keys one call uses together share one (a cluster refuses
    keys of several slots in one call, and the core's keys share theirs)."""
    import uuid

    return f"test:{{{uuid.uuid4().hex}}}:{name}"


def test_take_until_empty_then_refuse_with_retry_after(run: Runner) -> None:
    key = unique("rpm")
    spec = BucketSpec(key, capacity=3, rate=0.001, cost=1)

    async def scenario(store: Store) -> list[bool]:
        results = [await store.take([spec]) for _ in range(4)]
        return [r.allowed for r in results] + [results[-1].retry_after_s > 100]

    assert run(scenario) == [True, True, True, False, True]


def test_multi_bucket_take_is_all_or_nothing(run: Runner) -> None:
    tag = unique("tenant")
    requests, tokens = tag + ":rpm", tag + ":tpm"

    async def scenario(store: Store) -> tuple[bool, bool, float]:
        roomy = BucketSpec(requests, capacity=100, rate=0.001, cost=1)
        tight = BucketSpec(tokens, capacity=10, rate=0.001, cost=8)
        first = await store.take([roomy, tight])
        second = await store.take([roomy, tight])  # tokens bucket has 2 left: refused
        after = await store.take([BucketSpec(requests, 100, 0.001, 0)])
        return first.allowed, second.allowed, after.remaining[0]

    first, second, requests_left = run(scenario)
    assert first and not second
    assert requests_left == pytest.approx(99, abs=0.01)  # the refused take spent nothing


def test_adjust_settles_reservations_into_debt(run: Runner) -> None:
    key = unique("tpm")

    async def scenario(store: Store) -> tuple[bool, bool]:
        spec = BucketSpec(key, capacity=100, rate=0.001, cost=10)
        await store.take([spec])
        await store.adjust(key, 150, 100, 0.001)  # actual usage far above the estimate
        refused = await store.take([BucketSpec(key, 100, 0.001, 1)])
        await store.adjust(key, -200, 100, 0.001)  # refunds never exceed capacity
        allowed = await store.take([BucketSpec(key, 100, 0.001, 100)])
        return refused.allowed, allowed.allowed

    assert run(scenario) == (False, True)


def test_settlement_rides_along_and_persists_even_when_refused(run: Runner) -> None:
    key = unique("tpm")

    async def scenario(store: Store) -> tuple[bool, bool, bool]:
        await store.take([BucketSpec(key, capacity=100, rate=0.001, cost=90)])
        # The refund of 80 is applied before the check: 90 fits again.
        refunded = await store.take([BucketSpec(key, 100, 0.001, 90, settle=-80)])
        # A charge of 50 with a refused take still persists...
        refused = await store.take([BucketSpec(key, 100, 0.001, 40, settle=50)])
        # ...so even a small take fails afterwards.
        after = await store.take([BucketSpec(key, 100, 0.001, 1)])
        return refunded.allowed, refused.allowed, after.allowed

    assert run(scenario) == (True, False, False)


def test_settlements_persist_in_the_refused_group_and_the_admitted_one(run: Runner) -> None:
    """Redis writes an admitted group's keys once (the settlement with the take) and a
    refused group's with the settlement alone: both must hold afterwards."""
    tag = unique("pool")
    first, second = tag + ":a", tag + ":b"

    async def scenario(store: Store) -> tuple[int, float, float]:
        index, _ = await store.take_first(
            [
                [BucketSpec(first, capacity=100, rate=0.001, cost=60, settle=50)],
                [BucketSpec(second, capacity=100, rate=0.001, cost=10, settle=30)],
            ]
        )
        probe = [BucketSpec(first, 100, 0.001, 0), BucketSpec(second, 100, 0.001, 0)]
        left = (await store.take(probe)).remaining
        return index, left[0], left[1]

    index, first_left, second_left = run(scenario)
    assert index == 1  # 100 - 50 settled leaves 50: the first group's 60 does not fit
    assert first_left == pytest.approx(50, abs=0.01)
    assert second_left == pytest.approx(60, abs=0.01)  # 100 - 30 settled - 10 taken


def test_extras_are_taken_only_when_every_bucket_holds_them(run: Runner) -> None:
    tag = unique("tenant")
    requests, tokens = tag + ":rpm", tag + ":tpm"

    async def scenario(store: Store) -> list[tuple[bool, bool, tuple[float, ...]]]:
        def specs(token_extra: float) -> list[BucketSpec]:
            return [
                BucketSpec(requests, capacity=100, rate=0.001, cost=1, extra=10),
                BucketSpec(tokens, capacity=1000, rate=0.001, cost=100, extra=token_extra),
            ]

        out = []
        # tokens 1000 -> 400 (with the extras) -> 300 (without: 500 more won't fit) -> 200
        for extra in (500, 500, 0):
            result = await store.take(specs(extra))
            out.append((result.allowed, result.granted, result.remaining))
        return out

    (a, a_granted, a_left), (b, b_granted, b_left), (c, c_granted, c_left) = run(scenario)
    assert (a, a_granted) == (True, True)
    assert a_left == pytest.approx((89, 400), abs=0.01)
    assert (b, b_granted) == (True, False)  # admitted; 500 more tokens do not fit after 100
    assert b_left == pytest.approx((88, 300), abs=0.01)
    assert (c, c_granted) == (True, True)  # no extra asked of the tokens: the requests' fits
    assert c_left == pytest.approx((77, 200), abs=0.01)


def test_a_refused_take_grants_no_extra(run: Runner) -> None:
    key = unique("rpm")

    async def scenario(store: Store) -> tuple[bool, bool, float]:
        await store.take([BucketSpec(key, capacity=10, rate=0.001, cost=9)])
        result = await store.take([BucketSpec(key, 10, 0.001, cost=2, extra=1)])
        return result.allowed, result.granted, result.remaining[0]

    allowed, granted, left = run(scenario)
    assert (allowed, granted) == (False, False)
    assert left == pytest.approx(1, abs=0.01)


def test_oversized_cost_is_admitted_only_from_a_full_bucket(run: Runner) -> None:
    key = unique("tpm")

    async def scenario(store: Store) -> tuple[bool, bool]:
        big = BucketSpec(key, capacity=10, rate=0.001, cost=50)
        return (await store.take([big])).allowed, (await store.take([big])).allowed

    assert run(scenario) == (True, False)


def test_values_expire(run: Runner) -> None:
    key = unique("value")

    async def scenario(store: Store) -> tuple[bytes | None, bytes | None]:
        await store.set(key, b"v", 60)
        present = await store.get(key)
        await store.set(key, b"v", 0.001)
        for _ in range(100):
            if await store.get(key) is None:
                return present, None
            await asyncio.sleep(0.01)
        return present, await store.get(key)

    assert run(scenario) == (b"v", None)


def test_get_many_reads_keys_of_different_hash_tags_in_order(run: Runner) -> None:
    keys = [f"il:{{b:{unique('t')}}}:open" for _ in range(3)]

    async def scenario(store: Store) -> tuple[list[bytes | None], list[bytes | None]]:
        await store.set(keys[0], b"a", 60)
        await store.set(keys[2], b"c", 60)
        return await store.get_many(keys), await store.get_many([])

    assert run(scenario) == ([b"a", None, b"c"], [])


def test_share_keeps_each_members_value_with_its_age_and_drops_stale_members(run: Runner) -> None:
    keys = [f"il:{{l:{unique('s')}}}:stats" for _ in range(2)]

    async def scenario(store: Store) -> list[Any]:
        first = await store.share([(keys[0], b"a1"), (keys[1], None)], "a", 0.3)
        second = await store.share([(keys[0], b"b1"), (keys[1], b"b2")], "b", 0.3)
        await asyncio.sleep(0.2)
        refreshed = await store.share([(keys[0], b"b3")], "b", 0.3)
        await asyncio.sleep(0.15)  # a's value is now older than the ttl: gone
        read = await store.share([(keys[0], None), (keys[1], None)], "c", 0.3)
        return [first, second, refreshed, read]

    first, second, refreshed, read = run(scenario)
    assert first[1] == {} and set(first[0]) == {"a"} and first[0]["a"][1] == b"a1"
    assert {m: v for m, (_, v) in second[0].items()} == {"a": b"a1", "b": b"b1"}
    assert {m: v for m, (_, v) in refreshed[0].items()} == {"a": b"a1", "b": b"b3"}
    assert 0.15 <= refreshed[0]["a"][0] < 0.3 and refreshed[0]["b"][0] < 0.05
    assert {m: v for m, (_, v) in read[0].items()} == {"b": b"b3"}
    assert 0.1 <= read[0]["b"][0] < 0.3
    assert read[1] == {}  # b2 was written 0.35 s ago


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.integers(1, 50),
    rate=st.floats(0.1, 20),
    events=st.lists(st.tuples(st.floats(0, 2), st.integers(1, 60)), min_size=1, max_size=60),
)
def test_admitted_never_exceeds_capacity_plus_refill_plus_one_request(
    capacity: int, rate: float, events: list[tuple[float, int]]
) -> None:
    state: dict[str, tuple[float, float]] = {}
    now = 0.0
    admitted = 0.0
    biggest = 0
    for gap, cost in events:
        now += gap
        if take(state, [BucketSpec("k", capacity, rate, cost)], now).allowed:
            admitted += cost
            biggest = max(biggest, cost)
    overshoot = max(0, biggest - capacity)  # an oversized request may go into debt once
    assert admitted <= capacity + rate * now + overshoot + 1e-6


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-50, 50), max_size=20))
def test_adjust_never_exceeds_capacity(deltas: list[float]) -> None:
    state: dict[str, tuple[float, float]] = {}
    for i, delta in enumerate(deltas):
        assert adjust(state, "k", delta, 30, 1.0, float(i)) <= 30


def test_take_first_admits_the_first_group_with_capacity(run: Runner) -> None:
    tag = unique("pool")
    a, b = tag + ":key-a", tag + ":key-b"

    async def scenario(store: Store) -> list[int]:
        groups = [[BucketSpec(a, 1, 0.001, 1)], [BucketSpec(b, 2, 0.001, 1)]]
        picks = [(await store.take_first(groups))[0] for _ in range(4)]
        index, refused = await store.take_first(groups)
        assert not refused.allowed and refused.retry_after_s > 100
        return [*picks, index]

    # key a once, then key b twice, then nothing: -1 with the shortest wait
    assert run(scenario) == [0, 1, 1, -1, -1]


def test_a_released_claim_can_be_claimed_again(run: Runner) -> None:
    """The Idempotency-Key in-flight marker (core.cache.idempotency): released when the first
    request failed, so a retry may claim it; releasing an unknown key is harmless."""
    key = unique("claim")

    async def scenario(store: Store) -> list[bool]:
        first = await store.claim(key, 60)
        held = await store.claim(key, 60)
        await store.release(key)
        again = await store.claim(key, 60)
        await store.release(unique("never-claimed"))
        return [first, held, again]

    assert run(scenario) == [True, False, True]


def test_lead_answers_the_holders_token_and_counts_followers(run: Runner) -> None:
    """Request coalescing's leader lock (core.cache.coalesce): the first caller holds it, the
    next learn the holder's token and are counted as its followers (one call each); only the
    holder's token releases it, learning how many followed; released, the next caller leads."""
    key = unique("lead")

    async def scenario(store: Store) -> list[Any]:
        first = await store.lead(key, b"a", 60)
        unwanted = await store.wanted(key)
        second = await store.lead(key, b"b", 60)
        await store.lead(key, b"b2", 60)
        await store.unfollow(key, b"a")
        await store.unfollow(key, b"other")  # not the holder: ignored
        wanted = await store.wanted(key)
        wrong = await store.unlead(key, b"b")  # not the holder: nothing released
        released = await store.unlead(key, b"a")
        third = await store.lead(key, b"c", 60)
        fourth = await store.lead(key, b"d", 60)
        gone = await store.wanted(unique("none"))
        return [first, unwanted, second, wanted, wrong, released, third, fourth, gone]

    assert run(scenario) == [None, 0, b"a", 1, 0, 1, None, b"c", 0]


def test_log_appends_in_order_reads_from_an_index_and_expires(run: Runner) -> None:
    """A coalescing leader's chunks: appended in order, read from where a follower got to;
    each append answers the followers its lock counts; the list lives its TTL after the last
    append; an unknown list reads as empty."""
    tag = unique("flight")
    key, lock = tag + ":log", tag + ":lock"

    async def scenario(store: Store) -> list[Any]:
        n1 = await store.log_append(key, [b"s{}", b"c1"], 0.3, lock)
        await store.lead(lock, b"t", 60)
        await store.lead(lock, b"u", 60)
        n2 = await store.log_append(key, [b"c2"], 0.3, lock)
        whole = await store.log_read(key, 0)
        rest = await store.log_read(key, 2)
        past = await store.log_read(key, 5)
        unknown = await store.log_read(unique("none"), 0)
        await asyncio.sleep(0.5)
        expired = await store.log_read(key, 0)
        return [n1, n2, whole, rest, past, unknown, expired]

    assert run(scenario) == [0, 1, [b"s{}", b"c1", b"c2"], [b"c2"], [], [], []]


def test_set_unlead_stores_the_answer_and_releases_only_its_holders_lock(run: Runner) -> None:
    """A coalesced leader's answer stored and its lock released in one call (core.cache.stage):
    the followers counted are answered; a token that does not hold the lock stores the value
    but releases nothing."""
    tag = unique("flight")
    entry, lock = f"{tag}:entry", f"{tag}:entry:co:leader"

    async def scenario(store: Store) -> list[Any]:
        await store.lead(lock, b"a", 60)
        await store.lead(lock, b"b", 60)  # one follower
        wrong = await store.set_unlead(entry, b"v1", 60, lock, b"b")
        held = await store.wanted(lock)
        wanted = await store.set_unlead(entry, b"v2", 60, lock, b"a")
        after = await store.lead(lock, b"c", 60)  # released: the next caller leads
        return [wrong, held, wanted, await store.get(entry), after]

    assert run(scenario) == [0, 1, 1, b"v2", None]


def test_mget_reads_keys_of_one_hash_tag_in_order(run: Runner) -> None:
    tag = unique("affinity")

    async def scenario(store: Store) -> list[bytes | None]:
        await store.set(f"{tag}:a", b"1", 60)
        await store.set(f"{tag}:c", b"3", 60)
        return [*await store.mget([f"{tag}:a", f"{tag}:b", f"{tag}:c"]), *await store.mget([])]

    assert run(scenario) == [b"1", None, b"3"]
