"""Rate-limit leases: a replica admits most requests of a busy tenant from a share of the
tenant's buckets it took beforehand, without a store call.

With shared state (Redis), every admission was one Lua call: the most expensive script the
core runs per request (about 30 us of Redis time for the tenant's two buckets, plus the round
trip on the request's path and the core's encoding of 20 arguments). Instead, when a replica
takes from the store it may ask for an extra share of each bucket (core.state.buckets
`BucketSpec.extra`: taken only if every bucket still holds it after the request's own cost);
later requests spend their cost from that lease locally while it covers them all.

What this changes, and what it does not:

- Overshoot: none. A lease is taken from the shared bucket before anything is spent from it, so
  the limits' bound (core.limits.tenant) holds across replicas as it did.
- Early refusal: a request the store refuses may have fitted in what other replicas hold as
  leases: per replica at most LEASE_DRAWS requests' costs and 1/LEASE_SHARE of a bucket's
  capacity, for at most LEASE_S. Small limits are never leased: a lease must cover at least
  MIN_DRAWS requests on every bucket (so `rpm: 60`, capacity 6, is taken per request as before).
- Headers: a leased admission reports the shared level seen when the lease was granted plus
  what is left of the lease, which is what the store would say but for refill and other
  replicas' takes since: stale by at most LEASE_S.
- Return: a lease's remainder goes back with the tenant's next store call (as a settlement),
  once it is LEASE_S old (the settlements' next flush: `sweep`), and on shutdown. A replica that
  dies loses its remainder, which the buckets refill at their rate.

Leases are only used with shared state: the in-memory store is local already.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from core.state.buckets import BucketSpec, TakeResult

LEASE_DRAWS = 32  # a lease holds at most this many of the request's costs, per bucket
LEASE_SHARE = 16  # and at most 1/LEASE_SHARE of the bucket's capacity
MIN_DRAWS = 4  # a lease smaller than this many costs on any bucket is not asked for
LEASE_S = 1.0  # a lease is spent from for this long after it was granted
MAX_LEASES = 4096  # tenants a replica holds leases for at once (beyond: no new lease)
WAITS = 2  # leases on their way a request waits for before it takes from the store itself


@dataclass(slots=True)
class Lease:
    """What a replica holds of a tenant's buckets (one entry per bucket, in the limiter's
    order): the shapes leased from, what is left to spend, the shared levels after the grant."""

    shapes: tuple[tuple[str, float, float], ...]  # key, capacity, rate
    left: list[float]
    seen: tuple[float, ...]
    until: float


def _shapes(specs: list[BucketSpec]) -> tuple[tuple[str, float, float], ...]:
    return tuple((s.key, s.capacity, s.rate) for s in specs)


def lease_size(spec: BucketSpec) -> float:
    """The extra asked of one bucket: LEASE_DRAWS costs, at most 1/LEASE_SHARE of it, whole."""
    return float(min(LEASE_DRAWS * spec.cost, math.floor(spec.capacity / LEASE_SHARE)))


class Leases:
    """A replica's leases, by tenant. `settle` hands a remainder back later (a refund deferred
    to the settlements: key, delta, capacity, rate)."""

    def __init__(
        self,
        settle: Callable[[str, float, float, float], None],
        enabled: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = enabled
        self._settle = settle
        self.clock = clock  # time.monotonic; a test may set its own
        self._leases: dict[str, Lease] = {}
        # Tenants with a store call out that asked for a lease: done once it is answered.
        self._asking: dict[str, asyncio.Future[None]] = {}

    def __len__(self) -> int:
        return len(self._leases)

    def draw(self, tenant: str, specs: list[BucketSpec]) -> tuple[float, ...] | None:
        """Spends the specs' costs from the tenant's lease: the levels to report, or None when
        the lease is missing, old, of other buckets, or short on any bucket (the store's turn;
        nothing is spent)."""
        lease = self._leases.get(tenant)
        if lease is None or lease.until <= self.clock() or lease.shapes != _shapes(specs):
            return None
        left = lease.left
        if any(have < spec.cost for have, spec in zip(left, specs, strict=True)):
            return None
        for i, spec in enumerate(specs):
            left[i] -= spec.cost
        return tuple(level + have for level, have in zip(lease.seen, left, strict=True))

    async def awaited(self, tenant: str, specs: list[BucketSpec]) -> tuple[float, ...] | None:
        """`draw` once the tenant's lease, if one is being asked for, has been answered: the
        requests that find the lease spent while a new one is on its way wait the one round
        trip they would have spent on a store call of their own, then draw from it (else a
        busy tenant's every lease change sent a burst of separate takes to the store). None
        when nothing is on its way, or it did not bring enough (the store's turn)."""
        for _ in range(WAITS):  # a lease that ran out under its waiters: the next one, once
            asked = self._asking.get(tenant)
            if asked is None:
                return None
            await asyncio.shield(asked)  # one waiter cancelled leaves the others theirs
            levels = self.draw(tenant, specs)
            if levels is not None:
                return levels
        return None

    def asking(self, tenant: str, specs: list[BucketSpec]) -> list[BucketSpec]:
        """The specs for a store call: the tenant's lease, if any, given back in it (its
        remainder refunded as a settlement), and a new one asked for when it is worth it."""
        lease = self._leases.pop(tenant, None)
        if lease is not None and lease.shapes == _shapes(specs):
            specs = [
                dataclasses.replace(spec, settle=spec.settle - have) if have else spec
                for spec, have in zip(specs, lease.left, strict=True)
            ]
        elif lease is not None:
            self._give_back(lease)
        if not self.enabled or tenant in self._asking or len(self._leases) >= MAX_LEASES:
            return specs
        sizes = [lease_size(spec) for spec in specs]
        if any(size < MIN_DRAWS * spec.cost for size, spec in zip(sizes, specs, strict=True)):
            return specs
        self._asking[tenant] = asyncio.get_running_loop().create_future()
        return [dataclasses.replace(s, extra=size) for s, size in zip(specs, sizes, strict=True)]

    def answered(self, tenant: str, specs: list[BucketSpec], result: TakeResult | None) -> None:
        """The store call `asking` shaped is over (None: it failed); a granted lease is kept,
        and the requests waiting on it (`awaited`) then draw from it."""
        if not any(spec.extra for spec in specs):
            return
        if result is not None and result.allowed and result.granted:
            left = [spec.extra for spec in specs]
            until = self.clock() + LEASE_S
            self._leases[tenant] = Lease(_shapes(specs), left, result.remaining, until)
        asked = self._asking.pop(tenant, None)
        if asked is not None:
            asked.set_result(None)

    def sweep(self, everything: bool = False) -> None:
        """Leases LEASE_S old (or all of them) given back through the settlements."""
        now = self.clock()
        for tenant, lease in list(self._leases.items()):
            if everything or lease.until <= now:
                del self._leases[tenant]
                self._give_back(lease)

    def _give_back(self, lease: Lease) -> None:
        for (key, capacity, rate), have in zip(lease.shapes, lease.left, strict=True):
            if have:
                self._settle(key, -have, capacity, rate)
