"""What happens when Redis is unreachable: an explicit operator choice, never a crash.

fail_open: serve from per-process state until Redis answers again, each replica's local buckets
holding 1/`replicas` of every shared bucket (capacity and refill), so N replicas together stay
near the shared limit instead of admitting N times it; fail_closed: refuse with 503 (and the
core's /readyz says not ready). Either way one log line per outage and a counter for metrics.
Redis is retried after a short pause, so recovery needs no restart. "Unreachable" is every
failure in core/state/errors.py's table: no connection, no reply in time, and the replies
that say the server cannot serve us now (a wrong password, LOADING, READONLY, MASTERDOWN...).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from core.state.buckets import BucketSpec, TakeResult
from core.state.budget_accounts import BudgetCharge, BudgetLine, BudgetReply
from core.state.errors import UNAVAILABLE
from core.state.store import MemoryStore, Store
from shared.errors import GatewayError

log = logging.getLogger("interlock.state")

T = TypeVar("T")
RETRY_AFTER_OUTAGE_S = 1.0


class ResilientStore:
    def __init__(self, primary: Store, fail_open: bool, replicas: int = 1) -> None:
        self.primary = primary
        self.fallback = MemoryStore()
        self.fail_open = fail_open
        self.replicas = replicas
        self.down_since: float | None = None
        self._retry_at = 0.0
        self.outages = 0  # exported as a metric
        self.fallback_calls = 0

    @property
    def healthy(self) -> bool:
        return self.down_since is None

    async def _call(
        self, primary: Callable[[], Awaitable[T]], fallback: Callable[[], Awaitable[T]]
    ) -> T:
        now = time.monotonic()
        if self.down_since is None or now >= self._retry_at:
            try:
                result = await primary()
            except UNAVAILABLE as exc:
                if self.down_since is None:
                    self.down_since = now
                    self.outages += 1
                    mode = "per-process limits" if self.fail_open else "refusing requests"
                    log.error(
                        "redis unreachable (%s); %s until it is back", type(exc).__name__, mode
                    )
                self._retry_at = now + RETRY_AFTER_OUTAGE_S
            else:
                if self.down_since is not None:
                    log.warning("redis reachable again after %.1f s", now - self.down_since)
                    self.down_since = None
                return result
        if not self.fail_open:
            raise GatewayError(
                503,
                "the gateway's shared state is unavailable; retry shortly",
                code="state_unavailable",
                headers={"retry-after": "1"},
            )
        self.fallback_calls += 1
        return await fallback()

    def _share(self, specs: list[BucketSpec]) -> list[BucketSpec]:
        """This replica's share of shared buckets, for the local fallback."""
        if self.replicas == 1:
            return specs
        n = self.replicas
        return [dataclasses.replace(s, capacity=s.capacity / n, rate=s.rate / n) for s in specs]

    async def take(self, specs: list[BucketSpec]) -> TakeResult:
        return await self._call(
            lambda: self.primary.take(specs), lambda: self.fallback.take(self._share(specs))
        )

    async def take_first(self, groups: list[list[BucketSpec]]) -> tuple[int, TakeResult]:
        return await self._call(
            lambda: self.primary.take_first(groups),
            lambda: self.fallback.take_first([self._share(specs) for specs in groups]),
        )

    async def adjust(self, key: str, delta: float, capacity: float, rate: float) -> None:
        n = self.replicas
        await self._call(
            lambda: self.primary.adjust(key, delta, capacity, rate),
            lambda: self.fallback.adjust(key, delta, capacity / n, rate / n),
        )

    async def budget_reserve(self, lines: list[BudgetLine], rid: str, ttl_s: float) -> BudgetReply:
        """fail_open: each replica holds 1/`replicas` of every budget while Redis is down."""
        n = self.replicas
        shared = (
            [
                dataclasses.replace(x, limit=x.limit // n, limit_tokens=x.limit_tokens // n)
                for x in lines
            ]
            if n > 1
            else lines
        )
        return await self._call(
            lambda: self.primary.budget_reserve(lines, rid, ttl_s),
            lambda: self.fallback.budget_reserve(shared, rid, ttl_s),
        )

    async def budget_settle(self, charges: list[BudgetCharge], ttl_s: float) -> dict[str, int]:
        return await self._call(
            lambda: self.primary.budget_settle(charges, ttl_s),
            lambda: self.fallback.budget_settle(charges, ttl_s),
        )

    async def get(self, key: str) -> bytes | None:
        return await self._call(lambda: self.primary.get(key), lambda: self.fallback.get(key))

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        return await self._call(
            lambda: self.primary.get_many(keys), lambda: self.fallback.get_many(keys)
        )

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        return await self._call(lambda: self.primary.mget(keys), lambda: self.fallback.mget(keys))

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._call(
            lambda: self.primary.set(key, value, ttl_s),
            lambda: self.fallback.set(key, value, ttl_s),
        )

    async def claim(self, key: str, ttl_s: float) -> bool:
        """fail_open: claims fall back to this process's memory (a replay to another replica
        during the outage is not caught); fail_closed: 503 like every other shared-state call."""
        return await self._call(
            lambda: self.primary.claim(key, ttl_s), lambda: self.fallback.claim(key, ttl_s)
        )

    async def release(self, key: str) -> None:
        await self._call(lambda: self.primary.release(key), lambda: self.fallback.release(key))

    async def lead(self, key: str, token: bytes, ttl_s: float) -> bytes | None:
        return await self._call(
            lambda: self.primary.lead(key, token, ttl_s),
            lambda: self.fallback.lead(key, token, ttl_s),
        )

    async def get_or_lead(
        self, key: str, lock: str, token: bytes, ttl_s: float
    ) -> tuple[bytes | None, bytes | None]:
        return await self._call(
            lambda: self.primary.get_or_lead(key, lock, token, ttl_s),
            lambda: self.fallback.get_or_lead(key, lock, token, ttl_s),
        )

    async def wanted(self, key: str) -> int:
        return await self._call(lambda: self.primary.wanted(key), lambda: self.fallback.wanted(key))

    async def unlead(self, key: str, token: bytes) -> int:
        return await self._call(
            lambda: self.primary.unlead(key, token), lambda: self.fallback.unlead(key, token)
        )

    async def unfollow(self, key: str, token: bytes) -> None:
        await self._call(
            lambda: self.primary.unfollow(key, token), lambda: self.fallback.unfollow(key, token)
        )

    async def set_unlead(
        self, key: str, value: bytes, ttl_s: float, lock: str, token: bytes
    ) -> int:
        return await self._call(
            lambda: self.primary.set_unlead(key, value, ttl_s, lock, token),
            lambda: self.fallback.set_unlead(key, value, ttl_s, lock, token),
        )

    async def log_append(self, key: str, items: list[bytes], ttl_s: float, lock: str) -> int:
        return await self._call(
            lambda: self.primary.log_append(key, items, ttl_s, lock),
            lambda: self.fallback.log_append(key, items, ttl_s, lock),
        )

    async def log_read(self, key: str, start: int) -> list[bytes]:
        return await self._call(
            lambda: self.primary.log_read(key, start),
            lambda: self.fallback.log_read(key, start),
        )

    async def share(
        self, entries: list[tuple[str, bytes | None]], member: str, ttl_s: float
    ) -> list[dict[str, tuple[float, bytes]]]:
        """fail_open: shared only within this process while Redis is down."""
        return await self._call(
            lambda: self.primary.share(entries, member, ttl_s),
            lambda: self.fallback.share(entries, member, ttl_s),
        )

    async def ping(self) -> bool:
        try:
            return await self.primary.ping()
        except UNAVAILABLE:
            return False

    async def close(self) -> None:
        await self.primary.close()
