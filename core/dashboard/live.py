"""The dashboard's view of this core's live state: budgets (consumption and reset), a tenant's
rate limits, and, for operators only, circuits, key pools and the refusal counters.

Budget consumption is what this replica last saw in the shared store's replies
(core.budgets.levels: every replica's spend, as of this replica's last reservation or
settlement under the budget); a budget not reserved on here this period shows as unknown.
Counters (rate-limit refusals, failovers, retries) are this process's since it started.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from core.api.usage import dollars, iso
from core.budgets.levels import BudgetLevels
from core.budgets.periods import PeriodClock
from core.observe.events import FAILOVERS, RATE_LIMITED, RETRIES
from core.resilience.circuit_board import BreakerBoard
from core.resilience.key_pools import KeyPools, key_id
from shared.config import BudgetConfig, Config


def budgets(
    config: Config, levels: BudgetLevels, tenant: str | None, now: float | None = None
) -> list[dict[str, Any]]:
    """Budgets the caller may see: every one for an operator (`tenant` None), else only those
    scoped to the caller's tenant (a shared budget's level would tell of other tenants)."""
    moment = time.time() if now is None else now
    return [
        _budget(b, levels, moment) for b in config.budgets if tenant is None or b.tenant == tenant
    ]


def _budget(b: BudgetConfig, levels: BudgetLevels, now: float) -> dict[str, Any]:
    window = PeriodClock(b).at(now)
    share = levels.used_share(b.name, now)
    return {
        "name": b.name,
        "scope": {
            "tenant": b.tenant,
            "tags": dict(b.tags),
            "provider": b.provider,
            "model": b.model,
        },
        "period": b.period,
        "window_s": b.window_s or None,
        "limit": dollars(b.limit_micros),
        "limit_micros": b.limit_micros,
        "limit_tokens": b.limit_tokens,
        "action": b.action,
        "used_share": None if share is None else round(share, 6),
        "spent_micros": None if share is None else round(share * b.limit_micros),
        "period_start": iso(window.start),
        "resets_at": iso(window.end),
    }


def limits(config: Config, tenant: str, tier: str) -> dict[str, Any]:
    """The caller's rate limits as the core applies them: its tenant override, else its
    token's tier (or the default tier an unknown one resolves to)."""
    found = config.limits.for_caller(tenant, tier)
    named = "tenant override" if tenant in config.limits.tenants else config.limits.tier_for(tier)
    if found is None:
        return {"tier": named, "rpm": None, "tpm": None}
    return {"tier": named, "rpm": found.rpm, "tpm": found.tpm, "burst": found.burst}


def operations(breakers: BreakerBoard, pools: KeyPools, providers: Iterable[str]) -> dict[str, Any]:
    """Operators only: circuits, key pools and this process's refusal counters."""
    now = time.monotonic()
    return {
        "circuits": [
            {"target": label, "state": str(breakers.state(label))}
            for label in sorted(breakers.labels())
        ],
        "key_pools": [_pool(pools, name, now) for name in sorted(providers)],
        "rate_limited": _series(RATE_LIMITED.series()),
        "failovers": _series(FAILOVERS.series()),
        "retries": _series(RETRIES.series()),
    }


def _pool(pools: KeyPools, provider: str, now: float) -> dict[str, Any]:
    pool = pools.pool(provider)
    resting = pool.resting(now)
    return {
        "provider": provider,
        "keys": len(pool.keys),
        "resting": [{"key_id": key_id(k), "for_s": round(left, 1)} for k, left in resting],
    }


def _series(series: list[tuple[tuple[str, ...], float]]) -> dict[str, int]:
    return {key[0] if key else "": int(value) for key, value in series}
