"""Rate-limit leases (core.limits.leases) against a real Redis: a busy tenant is admitted from a
lease without a store call, replicas never admit more than the limit together, small limits
are never leased, and a lease goes back after LEASE_S, on shutdown, and with the next take."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from core.limits import leases as leases_module
from core.limits.leases import LEASE_S
from core.limits.tenant import TenantLimiter
from core.state.buckets import BucketSpec, TakeResult
from core.state.redis_store import RedisStore
from core.state.resilient import ResilientStore
from shared.config import ConfigError, LimitsConfig, RateLimit
from shared.errors import GatewayError
from tests.support.redis_server import RedisServer


class CountingStore(RedisStore):
    """A real RedisStore that counts its takes and those that asked for a lease."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.takes = 0
        self.asked = 0

    async def take(self, specs: list[BucketSpec]) -> TakeResult:
        self.takes += 1
        self.asked += any(spec.extra for spec in specs)
        return await super().take(specs)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limits(rpm: int | None, tpm: int | None = None, burst: float = 0.1) -> LimitsConfig:
    return LimitsConfig(tiers={"t": RateLimit(rpm=rpm, tpm=tpm, burst=burst)}, tenants={})


def run(scenario: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(scenario())


def tenant() -> str:
    return "tenant-" + uuid.uuid4().hex[:12]


async def five_takes(url: str, config: LimitsConfig, who: str, leased: bool) -> tuple[int, int]:
    """Five admissions of `who`: the store's takes, and how many of them asked for a lease."""
    store = CountingStore(url)
    limiter = TenantLimiter(config, store, leased=leased)
    try:
        for _ in range(5):
            await limiter.admit(who, "t", 10)
        return store.takes, store.asked
    finally:
        await limiter.settlements.stop()
        await store.close()


def remaining(admission: Any, kind: str = "requests") -> int:
    return int(admission.headers[f"x-ratelimit-remaining-{kind}"])


# Buckets of 600 or 6000 that refill at 1 or 10 a second (a burst of 10 minutes' worth): the
# levels these tests read move by the takes alone while they run.
SLOW = LimitsConfig(tiers={"t": RateLimit(rpm=60, tpm=None, burst=10.0)}, tenants={})


def test_a_busy_tenant_is_admitted_from_its_lease(redis_url: str) -> None:
    """A bucket of 600, a lease of 32 requests. 40 requests: two takes (the second when the
    lease is spent), and the headers count down by one each time, as without a lease."""
    who = tenant()

    async def scenario() -> tuple[int, int, list[int]]:
        store = CountingStore(redis_url)
        limiter = TenantLimiter(SLOW, store, leased=True)
        try:
            seen = [remaining(await limiter.admit(who, "t", 10)) for _ in range(40)]
            return store.takes, store.asked, seen
        finally:
            await limiter.settlements.stop()
            await store.close()

    takes, asked, seen = run(scenario)
    assert (takes, asked) == (2, 2)
    assert seen == list(range(599, 559, -1))


def test_small_limits_are_taken_per_request(redis_url: str) -> None:
    """rpm 60 at burst 0.1 is a bucket of 6: no lease could hold MIN_DRAWS requests."""
    who = tenant()

    assert run(lambda: five_takes(redis_url, limits(60), who, leased=True)) == (5, 0)


def test_replicas_with_leases_admit_the_limit_and_no_more(redis_url: str) -> None:
    """Two replicas, 20 concurrent clients each, one bucket of 600 (rpm 600 at burst 1, 10 a
    second of refill): together they admit the bucket plus its refill while they ran, never
    more, and neither is refused while the other still holds what it needs."""
    who = tenant()

    async def replica(limiter: TenantLimiter, admitted: list[int]) -> None:
        async def client() -> None:
            while True:
                try:
                    await limiter.admit(who, "t", 1)
                except GatewayError as error:
                    assert error.status == 429
                    return
                admitted[0] += 1

        await asyncio.gather(*(client() for _ in range(20)))

    async def scenario() -> tuple[int, float]:
        stores = [RedisStore(redis_url), RedisStore(redis_url)]
        limiters = [TenantLimiter(limits(600, burst=1.0), s, leased=True) for s in stores]
        counts = [[0], [0]]
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await asyncio.gather(*(replica(x, c) for x, c in zip(limiters, counts, strict=True)))
            return counts[0][0] + counts[1][0], loop.time() - started
        finally:
            for limiter, store in zip(limiters, stores, strict=True):
                await limiter.settlements.stop()
                await store.close()

    total, elapsed = run(scenario)
    # What is leased but unspent when a replica is refused: at most the other's lease (32).
    assert 600 - 32 <= total <= 600 + 10 * elapsed + 1


def test_a_lease_goes_back_once_it_is_old(redis_url: str) -> None:
    who = tenant()

    async def scenario() -> tuple[int, int, int]:
        clock = Clock()
        store, other_store = RedisStore(redis_url), RedisStore(redis_url)
        limiter = TenantLimiter(limits(600, burst=10.0), store, leased=True)
        limiter.leases.clock = clock
        other = TenantLimiter(limits(600, burst=10.0), other_store)  # takes per request
        try:
            await limiter.admit(who, "t", 1)  # 6000 - 1, and a lease of 32 taken
            held = remaining(await other.admit(who, "t", 1))  # sees the lease as spent
            await limiter.settlements.flush()  # not old yet: kept
            kept = len(limiter.leases)
            clock.now += LEASE_S
            await limiter.settlements.flush()  # old: given back
            back = remaining(await other.admit(who, "t", 1))
            return held, kept, back
        finally:
            await limiter.settlements.stop()
            await store.close()
            await other_store.close()

    held, kept, back = run(scenario)
    assert kept == 1
    assert held == 5966  # 6000 - 1 - 32 - 1
    assert back - held >= 31  # the 32 came back (one more request was taken since)


def test_leases_go_back_on_shutdown(redis_url: str) -> None:
    who = tenant()

    async def scenario() -> int:
        store, other_store = RedisStore(redis_url), RedisStore(redis_url)
        limiter = TenantLimiter(limits(600, burst=10.0), store, leased=True)
        other = TenantLimiter(limits(600, burst=10.0), other_store)
        try:
            await limiter.admit(who, "t", 1)
            await limiter.settlements.stop()
            return remaining(await other.admit(who, "t", 1))
        finally:
            await store.close()
            await other_store.close()

    assert run(scenario) >= 5998  # only the two requests were spent


def test_a_request_the_lease_cannot_cover_takes_with_the_remainder_given_back(
    redis_url: str,
) -> None:
    """A bucket of 96000 tokens: a lease of 32 x 100. A request of 5000 tokens does not fit in
    what is left: it goes to the store, which gets the lease's remainder back in the same call
    (and no lease: 6000 tokens, a sixteenth of the bucket, would not hold 4 such requests)."""
    who = tenant()

    async def scenario() -> tuple[int, int, int]:
        store = CountingStore(redis_url)
        limiter = TenantLimiter(limits(None, tpm=9_600, burst=10.0), store, leased=True)
        try:
            first = remaining(await limiter.admit(who, "t", 100), "tokens")
            await limiter.admit(who, "t", 100)  # from the lease
            big = remaining(await limiter.admit(who, "t", 5000), "tokens")
            return first, big, store.takes
        finally:
            await limiter.settlements.stop()
            await store.close()

    first, big, takes = run(scenario)
    assert takes == 2
    assert first == 96_000 - 100
    assert 96_000 - 5200 <= big <= 96_000 - 5200 + 16  # refill: 160 a second


def test_one_lease_is_asked_for_at_a_time_and_the_others_wait_for_it(redis_url: str) -> None:
    """50 requests of a new tenant at once all miss the lease: one asks for one (a replica never
    holds more than one lease of a tenant) and the others wait for it and draw from it; the 17
    it cannot cover (1 + 32 served) wait for the next, which the first of them asks for."""
    who = tenant()

    async def scenario() -> tuple[int, int]:
        store = CountingStore(redis_url)
        limiter = TenantLimiter(limits(60_000), store, leased=True)
        try:
            await asyncio.gather(*(limiter.admit(who, "t", 1) for _ in range(50)))
            return store.takes, store.asked
        finally:
            await limiter.settlements.stop()
            await store.close()

    assert run(scenario) == (2, 2)


def test_leases_are_bounded(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leases_module, "MAX_LEASES", 2)

    async def scenario() -> tuple[int, int]:
        store = CountingStore(redis_url)
        limiter = TenantLimiter(limits(6000), store, leased=True)
        try:
            for who in [tenant() for _ in range(3)]:
                await limiter.admit(who, "t", 1)
            return len(limiter.leases), store.asked
        finally:
            await limiter.settlements.stop()
            await store.close()

    assert run(scenario) == (2, 2)


def test_without_shared_state_nothing_is_leased(redis_url: str) -> None:
    who = tenant()

    assert run(lambda: five_takes(redis_url, limits(6000), who, leased=False)) == (5, 0)


def test_no_lease_is_taken_from_the_fallback_while_redis_is_down(tmp_path: Path) -> None:
    """Redis down, fail_open: admissions come from this process's buckets, and no lease: its
    remainder would later go back to the shared bucket, which never gave it."""
    server = RedisServer(tmp_path / "redis")  # not started: Redis is down

    async def scenario() -> tuple[int, int]:
        store = ResilientStore(RedisStore(server.url), fail_open=True)
        limiter = TenantLimiter(SLOW, store, leased=True)
        try:
            for _ in range(5):
                await limiter.admit("acme", "t", 1)
            return len(limiter.leases), store.fallback_calls
        finally:
            await limiter.settlements.stop()
            await store.close()

    assert run(scenario) == (0, 5)


def test_leases_are_on_with_redis_unless_the_operator_turns_them_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.app import CoreState
    from tests.test_config import BASE, load

    redis = "state: {redis_url: 'redis://127.0.0.1:1/0'}\n"
    env = {"INTERLOCK_HOP_SECRET": "s" * 40}
    monkeypatch.setenv("INTERLOCK_HOP_SECRET", env["INTERLOCK_HOP_SECRET"])

    def leased(text: str) -> bool:
        return CoreState(load(tmp_path, BASE + text, env)).limiter.leases.enabled

    assert leased(redis)
    assert not leased(redis + "limits: {leases: false}\n")
    assert not leased("")  # in memory: a take is no call, nothing to save
    with pytest.raises(ConfigError, match=r"^limits\.leases"):
        load(tmp_path, BASE + "limits: {leases: maybe}\n", env)


def test_waiters_go_to_the_store_themselves_when_the_ask_fails(redis_url: str) -> None:
    """The call asking for a lease fails (its caller gets the error); the requests waiting on
    it are not left hanging: each takes from the store itself."""
    who = tenant()

    class FailingAsk(CountingStore):
        async def take(self, specs: list[BucketSpec]) -> TakeResult:
            if any(spec.extra for spec in specs) and not self.asked:
                self.asked += 1
                await asyncio.sleep(0.05)  # the others arrive and wait meanwhile
                raise ConnectionError("lost")
            return await super().take(specs)

    async def scenario() -> list[str]:
        store = FailingAsk(redis_url)
        limiter = TenantLimiter(limits(60_000), store, leased=True)
        try:
            outcomes = await asyncio.wait_for(
                asyncio.gather(
                    *(limiter.admit(who, "t", 1) for _ in range(10)), return_exceptions=True
                ),
                5,
            )
            return [type(o).__name__ for o in outcomes]
        finally:
            await limiter.settlements.stop()
            await store.close()

    outcomes = run(scenario)
    assert outcomes[0] == "ConnectionError"
    assert outcomes[1:] == ["Admission"] * 9
