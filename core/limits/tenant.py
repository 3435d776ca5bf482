"""Per-tenant rate limits: requests and tokens per minute, enforced across replicas.

`rpm: N` promises at most N x (1 + burst) requests in any 60-second window (`burst`, default
0.1, is the share of a minute's limit that may be spent at once: see burst_capacity), and N a
minute sustained; `tpm` the same in tokens, plus at most one request's overshoot (a request
costing more than the bucket holds is admitted from a full bucket, into debt).

Each request costs one atomic take from the tenant's two buckets (one Redis call), or, for a
busy tenant with limits large enough, a local draw from a lease this replica took from them
(core.limits.leases: no store call). Tokens are reserved from an estimate (prompt + max output)
and settled from actual usage afterwards: the settlement rides along with the tenant's next take
on this replica, and a background flush covers tenants that go quiet, so settling adds no round
trip to any request. 429s carry Retry-After and the x-ratelimit-* headers OpenAI clients read.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from core.limits.leases import Leases
from core.observe.events import RATE_LIMITED
from core.state.buckets import BucketSpec, TakeResult
from core.state.store import Store
from shared.config import LimitsConfig, RateLimit
from shared.errors import GatewayError
from shared.periodic import Periodic

log = logging.getLogger("interlock.limits")

DEFAULT_OUTPUT_ESTIMATE = 1024
FLUSH_INTERVAL_S = 0.1


def burst_capacity(per_minute: int, burst: float) -> int:
    """A limit's bucket: `burst` of a minute's allowance, refilled at per_minute / 60 a second.
    Any 60-second window then admits at most capacity + per_minute, i.e. per_minute x
    (1 + burst) rounded up; a full minute's capacity (burst 1) would admit twice the limit."""
    return max(1, math.ceil(per_minute * burst))


def reset_after(capacity: float, remaining: float, rate: float) -> str:
    """`x-ratelimit-reset-*` as OpenAI writes it ("12ms", "8.64s", "6m0s"): a duration Go's
    `time.ParseDuration` and the other clients' parsers read; never an exponent ("6e-10s")."""
    seconds = max(0.0, (capacity - remaining) / rate) if rate > 0 else 0.0
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    return f"{int(seconds // 60)}m{int(seconds % 60)}s"


class Settlements:
    """Unsettled token usage per bucket. A bucket's pending delta rides along with the next
    take on it from this replica; the background flush settles buckets that go quiet. A bucket
    is its key, capacity and refill rate (units a second; None: capacity / 60, a bucket that
    holds a full minute, as the key pools' are)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: dict[tuple[str, float, float], float] = defaultdict(float)
        self._periodic = Periodic("token_settlement", FLUSH_INTERVAL_S, self.flush)
        # Called before each flush (with True on the last): what they defer goes out with it
        # (leases given back).
        self.sweeps: list[Callable[[bool], None]] = []

    def defer(self, key: str, delta: float, capacity: float, rate: float | None = None) -> None:
        self._pending[(key, capacity, capacity / 60 if rate is None else rate)] += delta

    def pop(self, key: str, capacity: float, rate: float | None = None) -> float:
        return self._pending.pop((key, capacity, capacity / 60 if rate is None else rate), 0.0)

    def owed(self, key: str) -> float:
        """What this replica has not yet settled on bucket `key`, whatever its shape."""
        return sum(delta for (name, _, _), delta in self._pending.items() if name == key)

    async def flush(self, last: bool = False) -> None:
        for sweep in self.sweeps:
            sweep(last)
        pending, self._pending = self._pending, defaultdict(float)
        for (key, capacity, rate), delta in pending.items():
            if delta:
                try:
                    await self._store.adjust(key, delta, capacity, rate)
                except GatewayError:
                    log.warning("could not settle token usage: shared state unavailable")

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
        await self.flush(last=True)


@dataclass(slots=True)
class Reservation:
    """Tokens reserved from an estimate; settle() with the real count once it is known. The
    bucket refills at tpm / 60 a second and holds `tokens_capacity` (None: a full minute)."""

    settlements: Settlements | None = None
    tokens_key: str | None = None
    tpm: int | None = None
    reserved: int = 0
    tokens_capacity: float | None = None

    def settle(self, actual_tokens: int | None) -> None:
        if self.settlements is None or self.tokens_key is None or self.tpm is None:
            return
        used = self.reserved if actual_tokens is None else actual_tokens
        if used != self.reserved:
            capacity = self.tpm if self.tokens_capacity is None else self.tokens_capacity
            self.settlements.defer(self.tokens_key, used - self.reserved, capacity, self.tpm / 60)


@dataclass(slots=True)
class Admission(Reservation):
    """A request the tenant's limits let through, with the x-ratelimit-* headers to send."""

    headers: dict[str, str] = field(default_factory=dict)


UNLIMITED = Admission(None, None, None, 0)


class TenantLimiter:
    def __init__(
        self,
        limits: LimitsConfig,
        store: Store,
        settlements: Settlements | None = None,
        leased: bool = False,
    ) -> None:
        """`leased`: the store is shared by replicas (Redis): busy tenants are admitted from
        leases (core.limits.leases)."""
        self._limits = limits
        self._store = store
        self.settlements = settlements or Settlements(store)
        self.leases = Leases(self.settlements.defer, leased)
        self.settlements.sweeps.append(self.leases.sweep)

    @property
    def enabled(self) -> bool:
        return bool(self._limits.tiers or self._limits.tenants)

    def limit_for(self, tenant: str, tier: str) -> RateLimit | None:
        """The caller's limits. Fails closed: once tiers are configured, a token whose tier is
        not one of them (and that has no tenant override) is refused unless
        limits.default_tier names the tier to use; it never runs without limits."""
        limit = self._limits.for_caller(tenant, tier)
        if limit is None and self._limits.tiers:
            raise GatewayError(
                403,
                f"this token's tier {tier[:64]!r} is not configured on this gateway; "
                "ask the operator for a token with a valid tier",
                code="unknown_tier",
            )
        return limit

    async def admit(self, tenant: str, tier: str, estimated_tokens: int) -> Admission:
        limit = self.limit_for(tenant, tier)
        if limit is None or (limit.rpm is None and limit.tpm is None):
            return UNLIMITED
        specs, kinds = self._specs(tenant, limit, estimated_tokens)
        levels = self.leases.draw(tenant, specs)
        if levels is None:
            levels = await self.leases.awaited(tenant, specs)
        refused: TakeResult | None = None
        if levels is None:
            result = await self._take(tenant, specs)
            levels, refused = result.remaining, None if result.allowed else result
        headers = {}
        for spec, kind, remaining in zip(specs, kinds, levels, strict=True):
            per_minute = limit.rpm if kind == "requests" else limit.tpm
            headers[f"x-ratelimit-limit-{kind}"] = str(per_minute)
            headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, math.floor(remaining)))
            headers[f"x-ratelimit-reset-{kind}"] = reset_after(spec.capacity, remaining, spec.rate)
        if refused is not None:
            raise self._refusal(specs, kinds, levels, refused.retry_after_s, headers)
        if "tokens" not in kinds:
            return Admission(headers=headers)
        tokens = specs[kinds.index("tokens")]
        return Admission(
            self.settlements, tokens.key, limit.tpm, estimated_tokens, tokens.capacity, headers
        )

    async def refund_request(self, tenant: str, tier: str) -> None:
        """Gives back the request an admission counted (its tokens go back with settle(0)):
        a request refused after admission for something it never did (a replayed hop
        credential: core.api.nonce_claim) leaves the tenant's limits as it found them."""
        limit = self.limit_for(tenant, tier)
        if limit is None or limit.rpm is None:
            return
        bucket = _requests_bucket(tenant, limit.rpm, limit.burst)
        await self._store.adjust(bucket.key, -1, bucket.capacity, bucket.rate)

    async def _take(self, tenant: str, specs: list[BucketSpec]) -> TakeResult:
        """One store call: this replica's unsettled usage and its lease's remainder ride along,
        a new lease is asked for when worth it; the levels as if no lease had been taken."""
        pop = self.settlements.pop
        specs = [
            replace(s, settle=d) if (d := pop(s.key, s.capacity, s.rate)) else s for s in specs
        ]
        asked = self.leases.asking(tenant, specs)
        try:
            result = await self._store.take(asked)
        except BaseException:
            self.leases.answered(tenant, asked, None)
            raise
        self.leases.answered(tenant, asked, result)
        if not result.granted:
            return result
        levels = tuple(level + s.extra for level, s in zip(result.remaining, asked, strict=True))
        return replace(result, remaining=levels)

    @staticmethod
    def _specs(tenant: str, limit: RateLimit, tokens: int) -> tuple[list[BucketSpec], list[str]]:
        # One hash tag per tenant: both buckets share a cluster slot, so one Lua call suffices.
        specs, kinds = [], []
        if limit.rpm is not None:
            specs.append(_requests_bucket(tenant, limit.rpm, limit.burst))
            kinds.append("requests")
        if limit.tpm is not None:
            key = f"il:{{t:{tenant}}}:tpm"
            capacity, rate = burst_capacity(limit.tpm, limit.burst), limit.tpm / 60
            specs.append(BucketSpec(key, capacity, rate, tokens))
            kinds.append("tokens")
        return specs, kinds

    @staticmethod
    def _refusal(
        specs: list[BucketSpec],
        kinds: list[str],
        remaining: tuple[float, ...],
        wait: float,
        headers: dict[str, str],
    ) -> GatewayError:
        kind = "requests"
        for spec, name, level in zip(specs, kinds, remaining, strict=True):
            if level < min(spec.cost, spec.capacity):
                kind = name
                break
        RATE_LIMITED.add((kind,))
        unit = "requests per min (RPM)" if kind == "requests" else "tokens per min (TPM)"
        seconds = max(1, math.ceil(wait))
        return GatewayError(
            429,
            f"Rate limit reached for this tenant on {unit}. Please try again in {wait:.3g}s.",
            code="rate_limit_exceeded",
            type=kind,
            headers={
                **headers,
                "retry-after": str(seconds),
                "retry-after-ms": str(int(wait * 1000)),
            },
        )


def _requests_bucket(tenant: str, rpm: int, burst: float) -> BucketSpec:
    """The tenant's requests-per-minute bucket, costing one request (admission's take; a
    refund gives the one back)."""
    return BucketSpec(f"il:{{t:{tenant}}}:rpm", burst_capacity(rpm, burst), rpm / 60, 1)
