"""Per-tenant rate limits: requests and tokens per minute, enforced across replicas.

Each request costs one atomic take from the tenant's two buckets (one Redis call). Tokens are
reserved from an estimate (prompt + max output) and settled from actual usage afterwards: the
settlement rides along with the tenant's next take on this replica, and a background flush
covers tenants that go quiet, so settling adds no round trip to any request. 429s carry
Retry-After and the x-ratelimit-* headers OpenAI clients read.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field

from core.state.buckets import BucketSpec
from core.state.store import Store
from shared.config import LimitsConfig, RateLimit
from shared.errors import GatewayError
from shared.periodic import Periodic

log = logging.getLogger("interlock.limits")

DEFAULT_OUTPUT_ESTIMATE = 1024
FLUSH_INTERVAL_S = 0.1


def _reset(capacity: float, remaining: float, rate: float) -> str:
    seconds = max(0.0, (capacity - remaining) / rate) if rate > 0 else 0.0
    return f"{seconds:.3g}s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60)}s"


class Settlements:
    """Unsettled token usage per bucket. A bucket's pending delta rides along with the next
    take on it from this replica; the background flush settles buckets that go quiet."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: dict[tuple[str, int], float] = defaultdict(float)
        self._periodic = Periodic("token_settlement", FLUSH_INTERVAL_S, self.flush)

    def defer(self, key: str, delta: float, capacity: int) -> None:
        self._pending[(key, capacity)] += delta

    def pop(self, key: str, capacity: int) -> float:
        return self._pending.pop((key, capacity), 0.0)

    async def flush(self) -> None:
        pending, self._pending = self._pending, defaultdict(float)
        for (key, capacity), delta in pending.items():
            if delta:
                try:
                    await self._store.adjust(key, delta, capacity, capacity / 60)
                except GatewayError:
                    log.warning("could not settle token usage: shared state unavailable")

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
        await self.flush()


@dataclass(slots=True)
class Reservation:
    """Tokens reserved from an estimate; settle() with the real count once it is known."""

    settlements: Settlements | None = None
    tokens_key: str | None = None
    tpm: int | None = None
    reserved: int = 0

    def settle(self, actual_tokens: int | None) -> None:
        if self.settlements is None or self.tokens_key is None or self.tpm is None:
            return
        used = self.reserved if actual_tokens is None else actual_tokens
        if used != self.reserved:
            self.settlements.defer(self.tokens_key, used - self.reserved, self.tpm)


@dataclass(slots=True)
class Admission(Reservation):
    """A request the tenant's limits let through, with the x-ratelimit-* headers to send."""

    headers: dict[str, str] = field(default_factory=dict)


UNLIMITED = Admission(None, None, None, 0)


class TenantLimiter:
    def __init__(
        self, limits: LimitsConfig, store: Store, settlements: Settlements | None = None
    ) -> None:
        self._limits = limits
        self._store = store
        self.settlements = settlements or Settlements(store)

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
        result = await self._store.take(specs)
        headers = {}
        for spec, kind, remaining in zip(specs, kinds, result.remaining, strict=True):
            headers[f"x-ratelimit-limit-{kind}"] = str(int(spec.capacity))
            headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, math.floor(remaining)))
            headers[f"x-ratelimit-reset-{kind}"] = _reset(spec.capacity, remaining, spec.rate)
        if not result.allowed:
            raise self._refusal(specs, kinds, result.remaining, result.retry_after_s, headers)
        tokens_key = specs[kinds.index("tokens")].key if "tokens" in kinds else None
        return Admission(self.settlements, tokens_key, limit.tpm, estimated_tokens, headers)

    def _specs(
        self, tenant: str, limit: RateLimit, tokens: int
    ) -> tuple[list[BucketSpec], list[str]]:
        # One hash tag per tenant: both buckets share a cluster slot, so one Lua call suffices.
        specs, kinds = [], []
        if limit.rpm is not None:
            specs.append(BucketSpec(f"il:{{t:{tenant}}}:rpm", limit.rpm, limit.rpm / 60, 1))
            kinds.append("requests")
        if limit.tpm is not None:
            key = f"il:{{t:{tenant}}}:tpm"
            # This replica's unsettled usage for the tenant rides along with the take.
            settle = self.settlements.pop(key, limit.tpm)
            specs.append(BucketSpec(key, limit.tpm, limit.tpm / 60, tokens, settle))
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
