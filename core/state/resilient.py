"""What happens when Redis is unreachable: an explicit operator choice, never a crash.

fail_open: serve from per-process state until Redis answers again, each replica's local buckets
holding 1/`replicas` of every shared bucket (capacity and refill), so N replicas together stay
near the shared limit instead of admitting N times it; fail_closed: refuse with 503 (and the
core's /readyz says not ready). Either way one log line per outage and a counter for metrics.
Redis is retried after a short pause, so recovery needs no restart. "Unreachable" is every
failure in core/state/errors.py's table: no connection, no reply in time, and the replies
that say the server cannot serve us now (a wrong password, LOADING, READONLY, MASTERDOWN...).

The policy applies per owner: with Redis Cluster (core/state/cluster.py) an owner is the
primary serving a key's slot, so a lost primary sends only its slots' calls to the fallback
(or to 503) while the other primaries keep serving; once its replica is promoted, the slots'
owner is the replica, which is not down, and calls go to it at once. One node: one owner.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Protocol, TypeVar, runtime_checkable

from core.state.buckets import BucketSpec, TakeResult
from core.state.budget_accounts import BudgetCharge, BudgetLine, BudgetReply
from core.state.errors import UNAVAILABLE
from core.state.store import MemoryStore, Store
from shared.errors import GatewayError

log = logging.getLogger("interlock.state")

T = TypeVar("T")
RETRY_AFTER_OUTAGE_S = 1.0


@runtime_checkable
class Sharded(Protocol):
    """A store whose keys live on several nodes (Redis Cluster): which one serves a key."""

    def owner(self, key: str) -> str: ...

    def owners(self) -> frozenset[str]:
        """Every node that serves slots now."""
        ...


class _Outage:
    """One owner's outage: since when, and when to try it again."""

    __slots__ = ("retry_at", "since")

    def __init__(self, since: float) -> None:
        self.since = since
        self.retry_at = since + RETRY_AFTER_OUTAGE_S


class ResilientStore:
    def __init__(self, primary: Store, fail_open: bool, replicas: int = 1) -> None:
        self.primary = primary
        self.fallback = MemoryStore()
        self.fail_open = fail_open
        self.replicas = replicas
        # Owner ("" for one node; a primary's address in a cluster) -> its outage. Bounded by
        # the nodes of the cluster: an owner leaves when it answers again.
        self._down: dict[str, _Outage] = {}
        self._owner: Callable[[str], str] | None = None
        self._owners: Callable[[], frozenset[str]] | None = None
        if isinstance(primary, Sharded):
            self._owner, self._owners = primary.owner, primary.owners
        self.outages = 0  # exported as a metric
        self.fallback_calls = 0

    @property
    def healthy(self) -> bool:
        """No owner is down (with a cluster: every primary answered its last call)."""
        return not self._down

    def retry_now(self) -> None:
        """Try every owner that is down again at the next call (tests, and a readiness probe
        that just saw the store answer)."""
        for outage in self._down.values():
            outage.retry_at = 0.0

    async def _call(
        self, key: str, primary: Callable[[], Awaitable[T]], fallback: Callable[[], Awaitable[T]]
    ) -> T:
        """`primary()` unless the owner of `key` is down (and not yet due a retry)."""
        owner = self._owner(key) if self._owner is not None else ""
        now = time.monotonic()
        outage = self._down.get(owner)
        if outage is None or now >= outage.retry_at:
            try:
                result = await primary()
            except UNAVAILABLE as exc:
                self._failed(owner, now, exc)
            else:
                if self._down:
                    self._recovered(owner, now)
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

    def _recovered(self, owner: str, now: float) -> None:
        """`owner` answered; and owners that serve nothing any more (a primary replaced by its
        promoted replica) are no longer down: no key will ever be sent to them again."""
        current = self._owners() if self._owners is not None else None
        for gone in [o for o in self._down if o == owner or (current and o not in current)]:
            outage = self._down.pop(gone)
            where = f" (cluster primary {gone})" if gone else ""
            log.warning("redis reachable again%s after %.1f s", where, now - outage.since)

    def _failed(self, owner: str, now: float, exc: BaseException) -> None:
        if self._owners is not None and owner not in self._owners():
            return  # sent before the map changed, to a node that serves nothing now
        outage = self._down.get(owner)  # maybe made by a concurrent call since this one began
        if outage is not None:
            outage.retry_at = now + RETRY_AFTER_OUTAGE_S
            return
        self._down[owner] = _Outage(now)
        self.outages += 1
        mode = "per-process limits" if self.fail_open else "refusing requests"
        where = f" for the slots of cluster primary {owner}" if owner else ""
        log.error("redis unreachable (%s); %s%s until it is back", type(exc).__name__, mode, where)

    def _share(self, specs: list[BucketSpec]) -> list[BucketSpec]:
        """This replica's share of shared buckets, for the local fallback. No lease is taken
        from it (`extra`): a lease's remainder goes back to the shared bucket, which never
        gave it."""
        n = self.replicas
        return [
            dataclasses.replace(s, capacity=s.capacity / n, rate=s.rate / n, extra=0.0)
            for s in specs
        ]

    async def take(self, specs: list[BucketSpec]) -> TakeResult:
        return await self._call(
            _first(s.key for s in specs),
            lambda: self.primary.take(specs),
            lambda: self.fallback.take(self._share(specs)),
        )

    async def take_first(self, groups: list[list[BucketSpec]]) -> tuple[int, TakeResult]:
        return await self._call(
            _first(s.key for group in groups for s in group),
            lambda: self.primary.take_first(groups),
            lambda: self.fallback.take_first([self._share(specs) for specs in groups]),
        )

    async def adjust(self, key: str, delta: float, capacity: float, rate: float) -> None:
        n = self.replicas
        await self._call(
            key,
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
            _first(x.account.key for x in lines),
            lambda: self.primary.budget_reserve(lines, rid, ttl_s),
            lambda: self.fallback.budget_reserve(shared, rid, ttl_s),
        )

    async def budget_settle(self, charges: list[BudgetCharge], ttl_s: float) -> dict[str, int]:
        return await self._call(
            _first(a.key for c in charges for a in c.accounts),
            lambda: self.primary.budget_settle(charges, ttl_s),
            lambda: self.fallback.budget_settle(charges, ttl_s),
        )

    async def get(self, key: str) -> bytes | None:
        return await self._call(key, lambda: self.primary.get(key), lambda: self.fallback.get(key))

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        """Per owner: keys on a primary that is down are read from the fallback alone."""
        found: list[bytes | None] = [None] * len(keys)
        groups, get = self._by_owner(keys), self.fallback.get_many
        replies = await asyncio.gather(
            *(
                self._call(part[0], partial(self.primary.get_many, part), partial(get, part))
                for part in ([keys[i] for i in at] for at in groups)
            )
        )
        for at, values in zip(groups, replies, strict=True):
            for i, value in zip(at, values, strict=True):
                found[i] = value
        return found

    def _by_owner(self, keys: list[str]) -> list[list[int]]:
        """Indices of `keys` grouped by owner (one group with one node)."""
        if self._owner is None:
            return [list(range(len(keys)))] if keys else []
        groups: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(self._owner(key), []).append(i)
        return list(groups.values())

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        """One MGET: the keys share a hash tag (one slot, one owner)."""
        if not keys:
            return []
        return await self._call(
            keys[0], lambda: self.primary.mget(keys), lambda: self.fallback.mget(keys)
        )

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._call(
            key,
            lambda: self.primary.set(key, value, ttl_s),
            lambda: self.fallback.set(key, value, ttl_s),
        )

    async def claim(self, key: str, ttl_s: float) -> bool:
        """fail_open: claims fall back to this process's memory (a replay to another replica
        during the outage is not caught); fail_closed: 503 like every other shared-state call."""
        return await self._call(
            key, lambda: self.primary.claim(key, ttl_s), lambda: self.fallback.claim(key, ttl_s)
        )

    async def release(self, key: str) -> None:
        await self._call(key, lambda: self.primary.release(key), lambda: self.fallback.release(key))

    async def lead(self, key: str, token: bytes, ttl_s: float) -> bytes | None:
        return await self._call(
            key,
            lambda: self.primary.lead(key, token, ttl_s),
            lambda: self.fallback.lead(key, token, ttl_s),
        )

    async def get_or_lead(
        self, key: str, lock: str, token: bytes, ttl_s: float
    ) -> tuple[bytes | None, bytes | None]:
        return await self._call(
            key,
            lambda: self.primary.get_or_lead(key, lock, token, ttl_s),
            lambda: self.fallback.get_or_lead(key, lock, token, ttl_s),
        )

    async def wanted(self, key: str) -> int:
        return await self._call(
            key, lambda: self.primary.wanted(key), lambda: self.fallback.wanted(key)
        )

    async def unlead(self, key: str, token: bytes) -> int:
        return await self._call(
            key, lambda: self.primary.unlead(key, token), lambda: self.fallback.unlead(key, token)
        )

    async def unfollow(self, key: str, token: bytes) -> None:
        await self._call(
            key,
            lambda: self.primary.unfollow(key, token),
            lambda: self.fallback.unfollow(key, token),
        )

    async def set_unlead(
        self, key: str, value: bytes, ttl_s: float, lock: str, token: bytes
    ) -> int:
        return await self._call(
            key,
            lambda: self.primary.set_unlead(key, value, ttl_s, lock, token),
            lambda: self.fallback.set_unlead(key, value, ttl_s, lock, token),
        )

    async def log_append(self, key: str, items: list[bytes], ttl_s: float, lock: str) -> int:
        return await self._call(
            key,
            lambda: self.primary.log_append(key, items, ttl_s, lock),
            lambda: self.fallback.log_append(key, items, ttl_s, lock),
        )

    async def log_read(self, key: str, start: int) -> list[bytes]:
        return await self._call(
            key,
            lambda: self.primary.log_read(key, start),
            lambda: self.fallback.log_read(key, start),
        )

    async def share(
        self, entries: list[tuple[str, bytes | None]], member: str, ttl_s: float
    ) -> list[dict[str, tuple[float, bytes]]]:
        """fail_open: shared only within this process while Redis (the record's owner) is
        down."""
        found: list[dict[str, tuple[float, bytes]]] = [{} for _ in entries]
        groups = self._by_owner([key for key, _ in entries])
        replies = await asyncio.gather(
            *(
                self._call(
                    part[0][0],
                    partial(self.primary.share, part, member, ttl_s),
                    partial(self.fallback.share, part, member, ttl_s),
                )
                for part in ([entries[i] for i in at] for at in groups)
            )
        )
        for at, records in zip(groups, replies, strict=True):
            for i, record in zip(at, records, strict=True):
                found[i] = record
        return found

    async def ping(self) -> bool:
        try:
            return await self.primary.ping()
        except UNAVAILABLE:
            return False

    async def close(self) -> None:
        await self.primary.close()


def _first(keys: Iterable[str]) -> str:
    """The key a multi-key call is routed by (its keys share one hash tag: one owner)."""
    return next(iter(keys), "")
