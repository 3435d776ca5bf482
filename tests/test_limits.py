"""Tenant rate limits and the Redis-down policy, against real Redis processes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from core.limits.tenant import TenantLimiter, reset_after
from core.state.redis_store import RedisStore
from core.state.resilient import ResilientStore
from core.state.store import MemoryStore
from shared.config import LimitsConfig, RateLimit
from shared.errors import GatewayError
from tests.support.redis_server import RedisServer

# A full minute's burst (burst 1): these tests take whole buckets at once.
LIMITS = LimitsConfig(
    tiers={
        "free": RateLimit(rpm=3, tpm=None, burst=1.0),
        "paid": RateLimit(rpm=None, tpm=1000, burst=1.0),
    },
    tenants={"vip": RateLimit(rpm=1000, tpm=None, burst=1.0)},
)


@pytest.mark.parametrize(
    ("used", "rate", "written"),
    [
        (0.0, 1.0, "0ms"),
        (6e-10, 1.0, "0ms"),  # once "6e-10s": Go's time.ParseDuration refuses an exponent
        (0.012, 1.0, "12ms"),
        (8.64, 1.0, "8.64s"),
        (360.0, 1.0, "6m0s"),
        (90.0, 0.5, "3m0s"),
        (5.0, 0.0, "0ms"),  # no refill rate: nothing to wait for
    ],
)
def test_reset_durations_are_written_as_openai_writes_them(
    used: float, rate: float, written: str
) -> None:
    assert reset_after(100.0, 100.0 - used, rate) == written


def test_rpm_refusal_has_openai_headers() -> None:
    async def scenario() -> GatewayError:
        limiter = TenantLimiter(LIMITS, MemoryStore())
        for _ in range(3):
            admission = await limiter.admit("acme", "free", 10)
        assert admission.headers["x-ratelimit-limit-requests"] == "3"
        assert admission.headers["x-ratelimit-remaining-requests"] == "0"
        with pytest.raises(GatewayError) as info:
            await limiter.admit("acme", "free", 10)
        return info.value

    error = asyncio.run(scenario())
    assert error.status == 429 and error.code == "rate_limit_exceeded" and error.type == "requests"
    assert int(error.headers["retry-after"]) >= 1
    assert error.headers["x-ratelimit-remaining-requests"] == "0"


def test_tenants_are_isolated_and_overrides_win() -> None:
    async def scenario() -> None:
        limiter = TenantLimiter(LIMITS, MemoryStore())
        for _ in range(3):
            await limiter.admit("a", "free", 1)
        await limiter.admit("b", "free", 1)  # another tenant of the same tier is unaffected
        for _ in range(50):
            await limiter.admit("vip", "free", 1)  # the tenant override beats the tier
        await limiter.admit("vip", "unknown-tier", 1)  # ...and needs no configured tier

    asyncio.run(scenario())


def test_unknown_tier_is_refused_never_unlimited() -> None:
    """Finding 8: a token whose tier is not configured used to run without any limit."""

    async def scenario() -> GatewayError:
        limiter = TenantLimiter(LIMITS, MemoryStore())
        with pytest.raises(GatewayError) as info:
            await limiter.admit("nobody", "unknown-tier", 1)
        return info.value

    error = asyncio.run(scenario())
    assert error.status == 403 and error.code == "unknown_tier"
    assert "unknown-tier" in error.message


def test_unknown_tier_maps_to_the_default_tier() -> None:
    limits = LimitsConfig(tiers=LIMITS.tiers, tenants={}, default_tier="free")

    async def scenario() -> None:
        limiter = TenantLimiter(limits, MemoryStore())
        for _ in range(3):
            admission = await limiter.admit("nobody", "gold", 1)
        assert admission.headers["x-ratelimit-limit-requests"] == "3"  # free's limits apply
        with pytest.raises(GatewayError) as info:
            await limiter.admit("nobody", "no-such-tier", 1)  # same tenant, same free bucket
        assert info.value.status == 429

    asyncio.run(scenario())


def test_without_tiers_only_tenant_overrides_limit() -> None:
    limits = LimitsConfig(tiers={}, tenants={"vip": RateLimit(rpm=1, tpm=None)})

    async def scenario() -> None:
        limiter = TenantLimiter(limits, MemoryStore())
        assert (await limiter.admit("other", "anything", 1)).headers == {}
        await limiter.admit("vip", "anything", 1)
        with pytest.raises(GatewayError):
            await limiter.admit("vip", "anything", 1)

    asyncio.run(scenario())


def test_tokens_are_reserved_then_settled() -> None:
    async def scenario() -> None:
        limiter = TenantLimiter(LIMITS, MemoryStore())
        first = await limiter.admit("acme", "paid", 900)
        with pytest.raises(GatewayError) as info:
            await limiter.admit("acme", "paid", 200)  # 100 left of 1000
        assert info.value.type == "tokens"
        first.settle(100)  # actual usage was far below the estimate: 800 come back
        await limiter.settlements.flush()
        await limiter.admit("acme", "paid", 800)

    asyncio.run(scenario())


def _resilient_run(url: str, fail_open: bool, scenario):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        store = ResilientStore(RedisStore(url), fail_open=fail_open)
        try:
            return await scenario(store)
        finally:
            await store.close()

    return asyncio.run(main())


def test_redis_down_fail_open_then_recovers(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    url = server.url  # not started yet: Redis is down

    async def scenario(store: ResilientStore) -> None:
        limiter = TenantLimiter(LIMITS, store)
        admitted = await limiter.admit("acme", "free", 1)  # served from per-process buckets
        assert admitted.headers["x-ratelimit-limit-requests"] == "3"
        assert not store.healthy and store.outages == 1 and store.fallback_calls == 1
        server.start()
        try:
            store.retry_now()  # don't wait out the back-off in a test
            await limiter.admit("acme", "free", 1)
            assert store.healthy
            assert await store.primary.ping()
        finally:
            server.stop()

    _resilient_run(url, True, scenario)


def test_redis_down_fail_closed_is_503(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")

    async def scenario(store: ResilientStore) -> GatewayError:
        with pytest.raises(GatewayError) as info:
            await TenantLimiter(LIMITS, store).admit("acme", "free", 1)
        return info.value

    error = _resilient_run(server.url, False, scenario)
    assert error.status == 503 and error.code == "state_unavailable"
    assert error.headers["retry-after"] == "1"


def test_redis_killed_mid_run(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()

    async def scenario(store: ResilientStore) -> None:
        limiter = TenantLimiter(LIMITS, store)
        await limiter.admit("acme", "free", 1)
        assert store.healthy
        server.stop()
        await limiter.admit("acme", "free", 1)  # no crash: falls back
        assert not store.healthy

    try:
        _resilient_run(server.url, True, scenario)
    finally:
        server.stop()
