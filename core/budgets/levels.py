"""How full each budget is, as this replica last saw it: for routing rules that match on
budget pressure ("budget X above 80%"), at no cost of its own.

Every reservation's reply carries each applying budget's spend plus live holds, and every
settlement batch's reply the settled spend, both read from the shared store (so they include
every replica's spend); this keeps the latest per budget. A budget this replica has not
reserved on in the current period reads as unknown (None); a calendar period that has ended
reads 0; a rolling window keeps its last reading (it never resets at once).
"""

from __future__ import annotations

import time

from prometheus_client.core import Metric

from core.budgets.periods import PeriodClock, Window
from core.observe.families import gauges
from shared.config import BudgetConfig


class BudgetLevels:
    def __init__(self, budgets: tuple[BudgetConfig, ...] | list[BudgetConfig]) -> None:
        self._limits = {b.name: b.limit_micros for b in budgets}
        self._clocks = {b.name: PeriodClock(b) for b in budgets}
        self._seen: dict[str, tuple[int, str]] = {}  # budget -> (micro-dollars, window id)

    def saw(self, budget: BudgetConfig, w: Window, micros: int) -> None:
        self._seen[budget.name] = (micros, w.id)

    def used_share(self, name: str, now: float | None = None) -> float | None:
        """The share of budget `name`'s limit in use (1.0: full; above 1 for warn budgets);
        None for a budget unknown here or not seen this period."""
        seen = self._seen.get(name)
        clock = self._clocks.get(name)
        if seen is None or clock is None:
            return None
        current = clock.at(time.time() if now is None else now)
        if not current.slot_ms and current.id != seen[1]:
            return 0.0
        return seen[0] / self._limits[name]

    def metric_families(self) -> list[Metric]:
        """Each budget's use as this replica last saw it (budgets not seen here this period
        are left out): the share of its limit, and the micro-dollars left."""
        now = time.time()
        shares = {name: self.used_share(name, now) for name in self._limits}
        seen = {(name,): share for name, share in shares.items() if share is not None}
        left = {(n,): max(0.0, (1 - share) * self._limits[n]) for (n,), share in seen.items()}
        return [
            gauges(
                "interlock_budget_used_ratio",
                "Share of a budget's limit in use (above 1 for a warn budget past its limit).",
                ("budget",),
                seen.items(),
            ),
            gauges(
                "interlock_budget_remaining_microdollars",
                "What is left of a budget this period, in micro-dollars.",
                ("budget",),
                left.items(),
            ),
        ]
