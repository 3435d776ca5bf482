"""`budgets`: spend caps enforced across core replicas (core.budgets).

budgets:
  anthropic-daily:
    provider: anthropic          # scope: any of tenant, tags, provider, model, key
    tags: {priority: low}        # all given scope fields must match the request
    period: day                  # day | week | month (calendar-aligned) | rolling
    timezone: Europe/Berlin      # calendar periods only; default UTC
    window: 24h                  # rolling only: whole minutes, 1m to 90d
    limit: "200.00"              # dollars, exact decimal (stored as micro-dollars)
    limit_tokens: 5000000        # optional, every token the attempts used
    action: downgrade            # block | downgrade | warn
    downgrade_to: mistral-small  # a model, alias or provider/model (downgrade only)
    alerts: [50, 80, 100]        # percent of `limit`, each fired once per period
    webhook: https://ops.example/hooks/spend
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from shared import configparse as cp
from shared.configparse import ConfigError

PERIODS = ("day", "week", "month", "rolling")
MAX_WINDOW_S = 90 * 86400
ACTIONS = ("block", "downgrade", "warn")
MAX_LIMIT_MICROS = 10**15  # a billion dollars: beyond any real cap, within exact floats
MAX_BUDGETS = 256
# Names go into response headers, store keys and metric labels: a safe alphabet only.
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class BudgetConfig:
    name: str = field(metadata=cp.read_from())  # the key it is filed under
    limit_micros: int = field(metadata=cp.read_from("limit"))
    tenant: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    provider: str | None = None
    model: str | None = None  # the model the client asked for, or a target's model id
    key: str | None = None  # a provider key's id (core.resilience.key_pools.key_id)
    period: str = "day"
    timezone: str = "UTC"  # calendar periods: where a day, week or month starts
    window_s: int = field(default=0, metadata=cp.read_from("window"))  # rolling periods only
    limit_tokens: int | None = None
    action: str = "block"
    downgrade_to: str | None = None
    alerts: tuple[int, ...] = ()
    webhook: str | None = None


_BUDGET = cp.keys_of(BudgetConfig)


def parse_budgets(raw: Any, models: frozenset[str]) -> tuple[BudgetConfig, ...]:
    """Every budget, checked; `models` are the names a downgrade may route to."""
    entries = cp.named(raw, "budgets", "budget name to its scope, period, limit and action")
    if len(entries) > MAX_BUDGETS:
        raise ConfigError(f"budgets: at most {MAX_BUDGETS} budgets")
    return tuple(_budget(str(name), entry, models) for name, entry in entries.items())


def _budget(name: str, raw: Any, models: frozenset[str]) -> BudgetConfig:
    path = f"budgets.{name}"
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{path}: a budget name is 1-64 of A-Z a-z 0-9 . _ -")
    s = cp.section(raw, path, _BUDGET)
    period = cp.string(s, "period", path, "day")
    if period not in PERIODS:
        raise ConfigError(f"{path}.period: expected one of {', '.join(PERIODS)}")
    timezone, window_s = _period_shape(s, period, path)
    action = cp.string(s, "action", path, "block")
    if action not in ACTIONS:
        raise ConfigError(f"{path}.action: expected one of {', '.join(ACTIONS)}")
    downgrade_to = cp.optional_string(s, "downgrade_to", path)
    if (action == "downgrade") != (downgrade_to is not None):
        raise ConfigError(f"{path}.downgrade_to: required with action downgrade, and only then")
    if downgrade_to is not None and downgrade_to not in models and "/" not in downgrade_to:
        raise ConfigError(
            f"{path}.downgrade_to: no model or alias named {downgrade_to!r} "
            "(or name a route as provider/model)"
        )
    webhook = cp.optional_string(s, "webhook", path)
    if webhook is not None and not webhook.startswith(("http://", "https://")):
        raise ConfigError(f"{path}.webhook: expected an http:// or https:// URL")
    tokens = s.get("limit_tokens")
    return BudgetConfig(
        name=name,
        limit_micros=_dollars(s.get("limit"), f"{path}.limit"),
        tenant=cp.optional_string(s, "tenant", path),
        tags=tuple(sorted(cp.string_map(s, "tags", path).items())),
        provider=cp.optional_string(s, "provider", path),
        model=cp.optional_string(s, "model", path),
        key=cp.optional_string(s, "key", path),
        period=period,
        timezone=timezone,
        window_s=window_s,
        limit_tokens=None
        if tokens is None
        else cp.integer(s, "limit_tokens", path, 0, 1, MAX_LIMIT_MICROS),
        action=action,
        downgrade_to=downgrade_to,
        alerts=_alerts(s.get("alerts"), f"{path}.alerts"),
        webhook=webhook,
    )


def _period_shape(s: dict[str, Any], period: str, path: str) -> tuple[str, int]:
    """A calendar period's timezone, or a rolling period's window (whole minutes)."""
    timezone = cp.string(s, "timezone", path, "UTC")
    if period == "rolling":
        if "timezone" in s:
            raise ConfigError(f"{path}.timezone: applies to day, week and month periods only")
        if "window" not in s:
            raise ConfigError(f"{path}.window: required with period rolling (e.g. 24h)")
        window = cp.duration(s, "window", path, 0.0)
        if window != int(window) or int(window) % 60 or not 60 <= window <= MAX_WINDOW_S:
            raise ConfigError(f"{path}.window: whole minutes from 1m to 90d")
        return "UTC", int(window)
    if "window" in s:
        raise ConfigError(f"{path}.window: applies to period rolling only")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        raise ConfigError(f"{path}.timezone: no time zone named {timezone!r}") from None
    return timezone, 0


def _dollars(value: Any, path: str) -> int:
    """Decimal dollars (a string or a number, read through its decimal text: no float
    rounding) as integer micro-dollars."""
    if value is None or isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f'{path}: expected an amount in dollars such as "200.00"')
    try:
        amount = Decimal(str(value).strip().lstrip("$"))
    except InvalidOperation:
        raise ConfigError(f'{path}: expected an amount in dollars such as "200.00"') from None
    micros = amount * 1_000_000
    if not amount.is_finite() or micros != micros.to_integral_value():
        raise ConfigError(f"{path}: at most 6 decimal places (micro-dollars)")
    if not 0 < micros <= MAX_LIMIT_MICROS:
        raise ConfigError(f"{path}: must be positive and at most $1,000,000,000")
    return int(micros)


def _alerts(value: Any, path: str) -> tuple[int, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(type(v) is int and 0 < v <= 1000 for v in value):
        raise ConfigError(f"{path}: expected a list of percentages such as [50, 80, 100]")
    return tuple(sorted(set(value)))
