"""Budget enforcement per attempt: reserve-then-settle, across replicas.

Before every try at a target (core.resilience.lease, beside the breaker permit and the key
lease), `Budgets.reserve` prices the attempt for that target (Pricing.estimate: the input
estimate plus the smaller of max_tokens and the model's output limit) and reserves it on every
budget that applies: drawn from this replica's slices of them when they have room
(core.budgets.slices: no store call), else in one atomic store call (a Lua script with Redis)
that also asks for the slices again. A fallback is
re-checked at its own price, so a cheap model with an expensive fallback cannot escape a cap.
The hold is settled to the actual cost when the request is accounted (`BudgetHold.settle`), or
given back when the try fails (`release`); reservations expire on their own (RESERVATION_TTL_S)
if a core dies, and settling is idempotent on the hold's id.

When a budget has no room for the reservation its action decides: `block` refuses the target
(a 429 `budget_exceeded` naming the budget and its reset, if no other target can serve),
`downgrade` re-routes the request to the budget's cheaper model (`BudgetDowngrade`, handled by
the dispatch stage), `warn` never refuses (the reservation is counted; a log line and a metric
say the budget is over).

Overshoot bound: a reservation is admitted only if settled spend plus live reservations plus it
fit the limit, so settled spend exceeds a limit only by what requests used beyond their
reservation: at most the sum, over requests in flight at once, of (actual - estimate) when
positive (an input estimate below the provider's count; a price above the estimate's), plus any
hold that expired before it was settled (a request longer than RESERVATION_TTL_S).
"""

from __future__ import annotations

import itertools
import logging
import math
import secrets
import time
from collections.abc import Sequence

from core.budgets.ask import BudgetAsk
from core.budgets.periods import PeriodClock, Window
from core.budgets.settle import BudgetSettler, Settlement
from core.providers.adapters.base import ProviderError, Target
from core.resilience.key_pools import key_id
from core.spend.cost import Cost, Pricing
from core.spend.usage import UsageSplit
from core.state.budget_accounts import Account, BudgetCharge, BudgetLine
from core.state.store import Store
from shared.config import BudgetConfig
from shared.errors import FailureClass
from shared.secret import Secret

log = logging.getLogger("interlock.budgets")

RESERVATION_TTL_S = 1800.0  # longer than any request the gateway lets run (total deadline)
MAX_SCOPES = 4096  # remembered (tenant, tags, model, target, key) -> applying budgets
ORDER = {"block": 0, "downgrade": 1, "warn": 2}  # a blocking budget speaks first
warnings_total: dict[str, int] = {}  # budget -> reservations a warn budget had no room for
# Reservation ids: unique across replicas (a random prefix per process) without a random draw
# per attempt; the request id is the client's to choose, so it cannot be the key.
# (The prefix is drawn once: inside the generator's expression it would be drawn per id.)
_PREFIX = secrets.token_hex(6)
_IDS = (f"{_PREFIX}.{n}" for n in itertools.count())


def dollars(micros: int) -> str:
    return Cost(max(0, micros), None).dollars


class BudgetDowngrade(Exception):
    """A downgrade budget has no room: the request goes to `model` for the rest of the period."""

    def __init__(self, budget: BudgetConfig, model: str) -> None:
        super().__init__(budget.name)
        self.budget = budget
        self.model = model


class BudgetHold:
    """One attempt's reservation on the budgets that apply to it: settled once."""

    __slots__ = ("_pricing", "_settlement", "_settler", "estimate", "headers", "target")

    def __init__(
        self,
        settler: BudgetSettler,
        pricing: Pricing,
        target: Target,
        settlement: Settlement,
        headers: dict[str, str],
    ) -> None:
        self._settler = settler
        self._pricing = pricing
        self._settlement: Settlement | None = settlement
        self.target = target
        self.estimate = settlement.charge.cost
        self.headers = headers  # x-interlock-budget*: the applying budget with least room

    def settle(self, usage: dict[str, object] | None) -> None:
        """The request is accounted: its actual cost (from `usage`; none known, the estimate)."""
        if usage is None:
            self.settle_cost(None, None)
            return
        split = UsageSplit.from_usage(usage)
        cost = self._pricing.cost(self.target, split)
        self.settle_cost(cost.micros, split.input_total + split.output)

    def settle_cost(self, micros: int | None, tokens: int | None) -> None:
        """Settles at `micros` (None: the estimate), once; later calls do nothing."""
        settlement, self._settlement = self._settlement, None
        if settlement is not None:
            self._settler.defer(settlement.at(micros, tokens))

    def release(self) -> None:
        """The try failed: nothing is kept."""
        self.settle_cost(0, 0)


class Budgets:
    def __init__(
        self,
        configs: Sequence[BudgetConfig],
        store: Store,
        pricing: Pricing | None,
        settler: BudgetSettler,
    ) -> None:
        self._configs = tuple(sorted(configs, key=lambda b: ORDER[b.action]))
        self._clocks = {b.name: PeriodClock(b) for b in configs}
        self._store = store
        self._pricing = pricing
        self.settler = settler
        self._applying: dict[tuple[object, ...], list[BudgetConfig]] = {}  # bounded: MAX_SCOPES

    @property
    def enabled(self) -> bool:
        """Budgets are enforced once they are configured and prices exist to count them."""
        return bool(self._configs) and self._pricing is not None

    def applying(self, ask: BudgetAsk, target: Target, key: Secret | None) -> list[BudgetConfig]:
        """The budgets whose every scope field matches this attempt (remembered per scope:
        the same few combinations recur on every request)."""
        scope = (ask.tenant, ask.tags, ask.model, target.provider.name, target.model, key)
        found = self._applying.get(scope)
        if found is None:
            if len(self._applying) >= MAX_SCOPES:
                self._applying.clear()
            found = self._applying[scope] = self._match(ask, target, key)
        return found

    def _match(self, ask: BudgetAsk, target: Target, key: Secret | None) -> list[BudgetConfig]:
        key_name = key_id(key) if key is not None else None
        tags = set(ask.tags)
        return [
            b
            for b in self._configs
            if (b.tenant is None or b.tenant == ask.tenant)
            and (b.provider is None or b.provider == target.provider.name)
            and (b.model is None or b.model in (ask.model, target.model))
            and (b.key is None or b.key == key_name)
            and tags.issuperset(b.tags)
        ]

    async def reserve(
        self, ask: BudgetAsk, target: Target, key: Secret | None
    ) -> BudgetHold | None:
        """Reserves this attempt's estimate on every applying budget (None when none applies);
        raises ProviderError (429, block) or BudgetDowngrade when one has no room."""
        pricing = self._pricing
        applying = self.applying(ask, target, key) if pricing is not None else []
        if pricing is None or not applying:
            return None
        estimate = pricing.estimate(
            target, ask.input_tokens, ask.max_output_tokens, ask.units
        ).micros
        now = time.time()
        windows = tuple(self._clocks[b.name].at(now) for b in applying)
        accounts = tuple(_account(b, w, now) for b, w in zip(applying, windows, strict=True))
        slices = self.settler.slices
        used = slices.draw(accounts, estimate, ask.tokens, now)
        if used is not None:  # drawn from this replica's slices: no store call
            charge = BudgetCharge(
                next(_IDS), estimate, ask.tokens, accounts, slices.id, estimate, ask.tokens
            )
        else:
            rid = next(_IDS)
            used = await self._reserved(ask, applying, windows, accounts, rid, estimate, now)
            charge = BudgetCharge(rid, estimate, ask.tokens, accounts)
        self._warn(applying, used)
        settlement = Settlement(charge, tuple(applying), windows)
        headers = _tightest(applying, used, windows, now)
        return BudgetHold(self.settler, pricing, target, settlement, headers)

    async def _reserved(
        self,
        ask: BudgetAsk,
        applying: list[BudgetConfig],
        windows: tuple[Window, ...],
        accounts: tuple[Account, ...],
        rid: str,
        estimate: int,
        now: float,
    ) -> tuple[int, ...]:
        """The estimate reserved through the store as `rid` (one call), each account's slice
        given back and asked for again in it; each account's use, less this replica's room."""
        slices = self.settler.slices
        lines = [
            BudgetLine(
                account,
                b.limit_micros,
                b.limit_tokens or 0,
                estimate,
                ask.tokens,
                b.action != "warn",
                slices.ask(account, estimate, ask.tokens),
            )
            for b, account in zip(applying, accounts, strict=True)
        ]
        reply = await self._store.budget_reserve(lines, rid, RESERVATION_TTL_S)
        if reply.refused >= 0:
            for budget, w, level in zip(applying, windows, reply.used, strict=True):
                self.settler.levels.saw(budget, w, level)
            budget, w = applying[reply.refused], windows[reply.refused]
            headers = _headers(budget, reply.used[reply.refused], w, now)
            if budget.action == "downgrade" and budget.downgrade_to and not ask.downgraded_from:
                raise BudgetDowngrade(budget, budget.downgrade_to)
            raise exhausted(budget, w, now, headers)
        used = tuple(
            slices.granted(account, grant, level, now)
            for account, grant, level in zip(accounts, reply.granted, reply.used, strict=True)
        )
        for budget, w, level in zip(applying, windows, used, strict=True):
            self.settler.levels.saw(budget, w, level)
        return used

    def short_of(self, ask: BudgetAsk, target: Target) -> BudgetConfig | None:
        """The first budget, in the order `reserve` checks them, that would refuse this
        target's estimate (block or downgrade) as this replica last saw its level
        (BudgetLevels): what a route explanation reports, reserving nothing. A budget whose
        level is unknown here, or scoped to a key (the key is leased per try), is not judged."""
        pricing = self._pricing
        if pricing is None:
            return None
        estimate = pricing.estimate(
            target, ask.input_tokens, ask.max_output_tokens, ask.units
        ).micros
        levels = self.settler.levels
        for budget in self.applying(ask, target, None):
            share = levels.used_share(budget.name) if budget.action != "warn" else None
            if share is not None and share * budget.limit_micros + estimate > budget.limit_micros:
                return budget
        return None

    @staticmethod
    def _warn(applying: list[BudgetConfig], used: tuple[int, ...]) -> None:
        for budget, level in zip(applying, used, strict=True):
            if budget.action == "warn" and level > budget.limit_micros:
                warnings_total[budget.name] = warnings_total.get(budget.name, 0) + 1
                log.warning("budget %s is over its limit (warn only): served", budget.name)


def _account(budget: BudgetConfig, w: Window, now: float) -> Account:
    """Where a budget's period is kept (one hash tag: every budget in one cluster slot, so one
    script call covers them all), until its end (a rolling window: a window after this call)
    plus the reservation TTL."""
    until = now + budget.window_s if w.slot_ms else w.end
    key = f"il:{{budgets}}:{budget.name}:{w.account}"
    return Account(key, until + RESERVATION_TTL_S, w.slot_ms)


def _headers(budget: BudgetConfig, used: int, w: Window, now: float) -> dict[str, str]:
    return {
        "x-interlock-budget": budget.name,
        "x-interlock-budget-remaining": dollars(budget.limit_micros - used),
        "x-interlock-budget-reset": str(max(1, math.ceil(w.end - now))),
    }


def _tightest(
    applying: list[BudgetConfig], used: tuple[int, ...], windows: tuple[Window, ...], now: float
) -> dict[str, str]:
    room = [b.limit_micros - level for b, level in zip(applying, used, strict=True)]
    index = room.index(min(room))
    return _headers(applying[index], used[index], windows[index], now)


def exhausted(
    budget: BudgetConfig, w: Window, now: float, headers: dict[str, str]
) -> ProviderError:
    """The 429 a blocking budget answers: which budget, and when it resets."""
    wait = max(1.0, w.end - now)
    resets = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(w.end))
    if w.slot_ms:
        what = f"in its rolling {_span(budget.window_s)} window; room frees as spend ages out"
        when = f"next at {resets}"
    else:
        what, when = f"for this {budget.period}", f"it resets at {resets}"
    error = ProviderError(
        429,
        f"the budget '{budget.name}' is exhausted {what}; {when} (in {math.ceil(wait)}s)",
        FailureClass.QUOTA_EXHAUSTED,
        code="budget_exceeded",
        retry_after_s=wait,
    )
    error.headers.update(headers)
    return error


def _span(seconds: int) -> str:
    """A window's length as written in config: 90m, 24h, 7d."""
    for unit, size in (("d", 86400), ("h", 3600)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds // 60}m"
