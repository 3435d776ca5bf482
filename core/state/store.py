"""The Store seam: what the core keeps across requests (and, with Redis, across replicas)."""

from __future__ import annotations

import time
from typing import Protocol

from core.state.buckets import BucketSpec, TakeResult, adjust, take, take_first
from core.state.budget_accounts import BudgetCharge, BudgetLine, BudgetReply, MemoryAccounts


class Store(Protocol):
    async def take(self, specs: list[BucketSpec]) -> TakeResult:
        """All-or-nothing take from several buckets: one atomic call."""
        ...

    async def take_first(self, groups: list[list[BucketSpec]]) -> tuple[int, TakeResult]:
        """Admit the first group that can take, in order: one atomic call (key pools)."""
        ...

    async def adjust(self, key: str, delta: float, capacity: float, rate: float) -> None:
        """Settle a reservation: charge (delta > 0) or refund (delta < 0)."""
        ...

    async def budget_reserve(self, lines: list[BudgetLine], rid: str, ttl_s: float) -> BudgetReply:
        """Reserve on every budget line or none (core.state.budget_accounts): one atomic call."""
        ...

    async def budget_settle(self, charges: list[BudgetCharge], ttl_s: float) -> dict[str, int]:
        """Settle each reservation at its actual amount, once per id, in one atomic call: the
        settled spend per account key once the batch is in."""
        ...

    async def get(self, key: str) -> bytes | None: ...

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        """Several values in one round trip (the breaker sync reads every label at once)."""
        ...

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        """Several values of keys that share one hash tag, in one MGET (one command, one
        slot in a cluster): prompt-cache affinity's lookup of a prefix's boundaries."""
        ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...

    async def claim(self, key: str, ttl_s: float) -> bool:
        """Create `key` for `ttl_s` unless it exists (SET NX EX, one atomic call): True for
        the first claim, False while the key lives. Single-use tokens (hop nonces) use it."""
        ...

    async def release(self, key: str) -> None:
        """End a claim early (DEL): the work it guarded failed, so a retry may claim again
        (an Idempotency-Key's in-flight marker, core.cache.idempotency)."""
        ...

    async def lead(self, key: str, token: bytes, ttl_s: float) -> bytes | None:
        """Hold the lock `key` with `token` for `ttl_s` unless someone holds it (one atomic
        call): None when this caller now holds it, else the holder's token, and the caller is
        counted as its follower (request coalescing, core.cache.coalesce: a follower learns
        where the leader writes, and the leader that it is wanted)."""
        ...

    async def get_or_lead(
        self, key: str, lock: str, token: bytes, ttl_s: float
    ) -> tuple[bytes | None, bytes | None]:
        """`key`'s value, or, when there is none, `lead(lock, token, ttl_s)` in the same
        atomic call: (value, None) when found (no lock taken), else (None, the holder's token
        or None when this caller now holds the lock). A response-cache lookup and the
        coalescing lock of a miss in one round trip (core.cache.stage)."""
        ...

    async def wanted(self, key: str) -> int:
        """How many followers the lock `key` counts (0 when it is not held)."""
        ...

    async def unlead(self, key: str, token: bytes) -> int:
        """Give up the lock `key` if `token` holds it (one atomic call): the followers it
        counted then (0 if `token` did not hold it)."""
        ...

    async def unfollow(self, key: str, token: bytes) -> None:
        """One follower fewer on the lock `key`, if `token` still holds it."""
        ...

    async def set_unlead(
        self, key: str, value: bytes, ttl_s: float, lock: str, token: bytes
    ) -> int:
        """`set(key, value, ttl_s)` and `unlead(lock, token)` in one atomic call: a coalesced
        leader's answer stored and its lock given up at once (no moment with neither), in one
        round trip instead of two. The followers the lock counted, as `unlead`."""
        ...

    async def log_append(self, key: str, items: list[bytes], ttl_s: float, lock: str) -> int:
        """Append `items` to the list `key` and (re)set its TTL, in one atomic call: the
        followers the lock `lock` counts (a coalescing leader's chunks, core.cache.coalesce;
        the two keys share a hash tag)."""
        ...

    async def log_read(self, key: str, start: int) -> list[bytes]:
        """The items of the list `key` from index `start` on (none if it does not exist)."""
        ...

    async def share(
        self, entries: list[tuple[str, bytes | None]], member: str, ttl_s: float
    ) -> list[dict[str, tuple[float, bytes]]]:
        """For each (key, value), in one round trip: `member`'s value in the shared record
        `key` is set (unless None), members not refreshed within `ttl_s` are dropped, and
        every member's (age in seconds, value) is returned. Replicas exchange what each
        observed this way (core.resilience.stats_sync); ages come from one clock."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class _Lock:
    """A coalescing leader's lock in memory: its token, its followers, when it expires."""

    __slots__ = ("expiry", "followers", "token")

    def __init__(self, token: bytes, expiry: float) -> None:
        self.token = token
        self.followers = 0
        self.expiry = expiry


class MemoryStore:
    """Per-process state: the embedded default, and the fail-open fallback when Redis is down."""

    def __init__(self, max_keys: int = 100_000, max_claims: int = 262_144) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._values: dict[str, tuple[bytes, float]] = {}
        self._max_keys = max_keys
        # Claimed keys -> expiry, in claim order. Bounded: see `claim`.
        self._claims: dict[str, float] = {}
        self._max_claims = max_claims
        self._claims_floor = 0.0
        self._budgets = MemoryAccounts()
        self._shared: dict[str, dict[str, tuple[float, bytes]]] = {}
        self._logs: dict[str, tuple[list[bytes], float]] = {}
        self._locks: dict[str, _Lock] = {}  # coalescing locks (`lead`)

    def _bound(self, mapping: dict[str, object]) -> None:
        if len(mapping) >= self._max_keys:
            del mapping[next(iter(mapping))]

    async def take(self, specs: list[BucketSpec]) -> TakeResult:
        self._bound(self._buckets)  # type: ignore[arg-type]
        return take(self._buckets, specs, time.monotonic())

    async def take_first(self, groups: list[list[BucketSpec]]) -> tuple[int, TakeResult]:
        self._bound(self._buckets)  # type: ignore[arg-type]
        return take_first(self._buckets, groups, time.monotonic())

    async def adjust(self, key: str, delta: float, capacity: float, rate: float) -> None:
        adjust(self._buckets, key, delta, capacity, rate, time.monotonic())

    async def budget_reserve(self, lines: list[BudgetLine], rid: str, ttl_s: float) -> BudgetReply:
        return self._budgets.reserve(lines, rid, ttl_s, time.time())

    async def budget_settle(self, charges: list[BudgetCharge], ttl_s: float) -> dict[str, int]:
        return self._budgets.settle(charges, ttl_s, time.time())

    async def get(self, key: str) -> bytes | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        if entry[1] <= time.monotonic():
            del self._values[key]
            return None
        return entry[0]

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        return [await self.get(key) for key in keys]

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        return [await self.get(key) for key in keys]

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self._bound(self._values)  # type: ignore[arg-type]
        self._values[key] = (value, time.monotonic() + ttl_s)

    async def claim(self, key: str, ttl_s: float) -> bool:
        """Bounded without forgetting silently: expired claims are dropped from the front
        (claims arrive in roughly expiry order); if the store is still full, the oldest live
        claim is evicted and its expiry becomes a floor. A claim that would expire no later than
        an evicted one is refused, since the store can no longer prove it is the first."""
        now = time.monotonic()
        expiry = now + ttl_s
        claims = self._claims
        known = claims.get(key)
        if known is not None:
            if known > now:
                return False
            del claims[key]  # re-inserted at the end: the order stays roughly by expiry
        if expiry <= self._claims_floor:
            return False
        while claims:
            oldest = next(iter(claims))
            if claims[oldest] > now and len(claims) < self._max_claims:
                break
            self._claims_floor = max(self._claims_floor, claims.pop(oldest))
        claims[key] = expiry
        return True

    async def release(self, key: str) -> None:
        self._claims.pop(key, None)

    def _lock(self, key: str) -> _Lock | None:
        lock = self._locks.get(key)
        if lock is not None and lock.expiry <= time.monotonic():
            del self._locks[key]
            return None
        return lock

    async def lead(self, key: str, token: bytes, ttl_s: float) -> bytes | None:
        lock = self._lock(key)
        if lock is not None:
            lock.followers += 1
            return lock.token
        self._bound(self._locks)  # type: ignore[arg-type]
        self._locks[key] = _Lock(token, time.monotonic() + ttl_s)
        return None

    async def get_or_lead(
        self, key: str, lock: str, token: bytes, ttl_s: float
    ) -> tuple[bytes | None, bytes | None]:
        value = await self.get(key)
        if value is not None:
            return value, None
        return None, await self.lead(lock, token, ttl_s)

    async def wanted(self, key: str) -> int:
        lock = self._lock(key)
        return 0 if lock is None else lock.followers

    async def unlead(self, key: str, token: bytes) -> int:
        lock = self._lock(key)
        if lock is None or lock.token != token:
            return 0
        del self._locks[key]
        return lock.followers

    async def unfollow(self, key: str, token: bytes) -> None:
        lock = self._lock(key)
        if lock is not None and lock.token == token:
            lock.followers = max(0, lock.followers - 1)

    async def set_unlead(
        self, key: str, value: bytes, ttl_s: float, lock: str, token: bytes
    ) -> int:
        await self.set(key, value, ttl_s)
        return await self.unlead(lock, token)

    async def log_append(self, key: str, items: list[bytes], ttl_s: float, lock: str) -> int:
        now = time.monotonic()
        found = self._logs.get(key)
        if found is None or found[1] <= now:
            self._logs.pop(key, None)
            self._bound(self._logs)  # type: ignore[arg-type]
            found = ([], 0.0)
        found[0].extend(items)
        self._logs[key] = (found[0], now + ttl_s)
        return await self.wanted(lock)

    async def log_read(self, key: str, start: int) -> list[bytes]:
        found = self._logs.get(key)
        if found is None or found[1] <= time.monotonic():
            return []
        return found[0][start:]

    async def share(
        self, entries: list[tuple[str, bytes | None]], member: str, ttl_s: float
    ) -> list[dict[str, tuple[float, bytes]]]:
        now = time.monotonic()
        out = []
        for key, value in entries:
            record = self._shared.get(key)
            if record is None:
                self._bound(self._shared)  # type: ignore[arg-type]
                record = self._shared[key] = {}
            if value is not None:
                record[member] = (now, value)
            for stale in [m for m, (at, _) in record.items() if now - at > ttl_s]:
                del record[stale]
            out.append({m: (now - at, v) for m, (at, v) in record.items()})
        return out

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None
