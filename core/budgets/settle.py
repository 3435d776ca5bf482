"""Settling budget holds off the request path: the account step (sync) hands each settlement
here, a background job sends them in batches (one script call settles up to BATCH of them,
idempotent on each hold's id, so a retry after a failure never counts twice) and checks the
alert thresholds on the settled spend each call returns. Bounded: when the store stays down
and the queue is full, the oldest settlement is dropped (its reservation then expires on its
own, uncounted), with a log line.

Draws from one slice on the same accounts are settled as one charge (`merged`): the script
does the same work per charge whatever its amounts (about ten Redis commands: a busy replica's
settlements were a third of Redis's time per request), and what a charge adds (spend, tokens,
the slice's hold given back) is a sum. A batch that failed is sent again exactly as it was (its
merged charges keep their ids), so a retry of a call that did land is still a no-op."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass

from core.budgets.alerts import Alerts
from core.budgets.levels import BudgetLevels
from core.budgets.periods import Window
from core.budgets.slices import Slices
from core.state.budget_accounts import BudgetCharge
from core.state.errors import UNAVAILABLE
from core.state.store import Store
from shared.config import BudgetConfig
from shared.errors import GatewayError
from shared.periodic import Periodic

log = logging.getLogger("interlock.budgets")

FLUSH_INTERVAL_S = 0.05
MAX_PENDING = 100_000
SETTLED_MEMORY_S = 1800.0  # how long a settled id is remembered (repeats are no-ops)
BATCH = 128  # settlements per script call
CONCURRENT_CALLS = 4


@dataclass(frozen=True, slots=True)
class Settlement:
    """A hold's reservation on its budgets: settled (`at`) to the amounts actually used."""

    charge: BudgetCharge  # the reserved estimate until settled at the actual cost
    budgets: tuple[BudgetConfig, ...]
    windows: tuple[Window, ...]

    def at(self, cost: int | None, tokens: int | None) -> Settlement:
        """This settlement at the actual amounts (None: keep the estimate)."""
        c = self.charge  # built field by field: dataclasses.replace costs microseconds
        charge = BudgetCharge(
            c.rid,
            c.cost if cost is None else cost,
            c.tokens if tokens is None else tokens,
            c.accounts,
            c.slice,
            c.drawn,
            c.drawn_tokens,
        )
        return Settlement(charge, self.budgets, self.windows)


def _retry(result: object) -> bool:
    """A settlement to send again: the store was unavailable (idempotent, so safe). Anything
    else unexpected is logged (by type only) and dropped rather than retried forever."""
    if result is None:
        return False
    if isinstance(result, (GatewayError, *UNAVAILABLE)):
        return True
    log.error("budget settlement failed: %s", type(result).__name__)
    return False


class BudgetSettler:
    def __init__(self, store: Store, alerts: Alerts, levels: BudgetLevels) -> None:
        self._store = store
        self.alerts = alerts
        self.levels = levels
        self._pending: deque[Settlement] = deque()
        self._resend: deque[Settlement] = deque()  # sent once and failed: resent as they are
        self.slices = Slices()  # this replica's slices of the budgets (core.budgets.slices)
        self.dropped = 0
        self._periodic = Periodic("budget_settlement", FLUSH_INTERVAL_S, self.flush)

    def defer(self, settlement: Settlement) -> None:
        if len(self._pending) + len(self._resend) >= MAX_PENDING:
            (self._resend or self._pending).popleft()
            self.dropped += 1
            log.warning("budget settlements backed up: dropped the oldest (it will expire)")
        self._pending.append(settlement)

    def _sweep(self, everything: bool = False) -> None:
        """Slices gone unused (all of them, on shutdown) given back with the next batch."""
        for charge in self.slices.sweep(time.time(), everything):
            self.defer(Settlement(charge, (), ()))

    async def flush(self) -> None:
        self._sweep()
        batch, self._resend = self._resend, deque()
        batch.extend(merged(self._pending))
        self._pending = deque()
        while batch:
            chunks: list[list[Settlement]] = []
            while batch and len(chunks) < CONCURRENT_CALLS:
                chunks.append([batch.popleft() for _ in range(min(BATCH, len(batch)))])
            results = await asyncio.gather(
                *(self._settle(chunk) for chunk in chunks), return_exceptions=True
            )
            failed = [s for c, r in zip(chunks, results, strict=True) if _retry(r) for s in c]
            if failed:  # the store is down: keep them (and what is left) for the next flush
                log.warning("could not settle budgets: shared state unavailable")
                self._resend.extend([*failed, *batch])
                return

    async def _settle(self, chunk: list[Settlement]) -> None:
        spent = await self._store.budget_settle([s.charge for s in chunk], SETTLED_MEMORY_S)
        seen: dict[str, tuple[BudgetConfig, Window]] = {}
        for s in chunk:
            if not s.budgets:  # a slice given back: no budget's spend changed
                continue
            for account, budget, w in zip(s.charge.accounts, s.budgets, s.windows, strict=True):
                seen[account.key] = (budget, w)
        for key, (budget, w) in seen.items():
            self.levels.saw(budget, w, spent[key])
            await self.alerts.check(budget, w, spent[key])

    def start(self) -> None:
        self._periodic.start()
        self.alerts.start()

    async def stop(self) -> None:
        await self._periodic.stop()
        self._sweep(everything=True)
        await self.flush()
        await self.alerts.stop()


def merged(pending: deque[Settlement]) -> list[Settlement]:
    """`pending` with the draws from each slice on the same accounts summed into one charge
    (the first's id, marked with the count), where each group first appears; holds of their
    own and slices given back stay as they are."""
    out: list[Settlement | list[Settlement]] = []
    groups: dict[tuple[str, tuple[str, ...]], list[Settlement]] = {}
    for s in pending:
        c = s.charge
        if not c.slice or not s.budgets:
            out.append(s)
            continue
        key = (c.slice, tuple(a.key for a in c.accounts))
        group = groups.get(key)
        if group is None:
            groups[key] = group = []
            out.append(group)
        group.append(s)
    return [_summed(x) if isinstance(x, list) else x for x in out]


def _summed(group: list[Settlement]) -> Settlement:
    """One charge for the group; the latest window (a rolling one moves) for levels and alerts."""
    if len(group) == 1:
        return group[0]
    c, last = group[0].charge, group[-1]
    charge = BudgetCharge(
        f"{c.rid}+{len(group)}",
        sum(s.charge.cost for s in group),
        sum(s.charge.tokens for s in group),
        c.accounts,
        c.slice,
        sum(s.charge.drawn for s in group),
        sum(s.charge.drawn_tokens for s in group),
    )
    return Settlement(charge, last.budgets, last.windows)
