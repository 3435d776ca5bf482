"""Budget accounts: reserve-then-settle against a spend cap, the semantics the Redis script
(core.state.budget_script) implements atomically across replicas and `MemoryAccounts` in one
process (the embedded default and the fail-open fallback).

One account per (budget, period): `spent` (settled micro-dollars and tokens) and the live
reservations, each with an expiry. A reservation is all-or-nothing over the lines of one call:
every enforced line must have room (spent + reserved + cost <= limit); warn lines never refuse.
Expired reservations are dropped on the next call (a core that died gives its hold back).
Settling is idempotent on the reservation id: it moves the reservation to `spent` at the
actual amount, once; the id is remembered for `ttl` afterwards, so a repeated settle is a no-op,
and a late settle (after its reservation expired) still counts what was spent.

A rolling account (`slot_ms` > 0) keeps settled spend per slot of time as well as its running
sum: on every call, slots older than the last `ROLLING_SLOTS` leave the sum (core.budgets.periods
says what that means for the window).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ROLLING_SLOTS = 60  # the slots a rolling window is kept in


@dataclass(frozen=True, slots=True)
class Account:
    """Where a budget's period is kept."""

    key: str
    expire_at: float  # unix seconds: the period's end plus the reservation TTL
    slot_ms: int = 0  # rolling windows: one slot's width; 0: a calendar period


@dataclass(frozen=True, slots=True)
class BudgetLine:
    """One budget's part of a reservation."""

    account: Account
    limit: int  # micro-dollars
    limit_tokens: int  # 0: no token cap
    cost: int  # micro-dollars reserved
    tokens: int
    enforce: bool  # False (warn): reserved and counted, never refused


@dataclass(frozen=True, slots=True)
class BudgetCharge:
    """A reservation settled at its actual amounts, on every account it was held on."""

    rid: str
    cost: int
    tokens: int
    accounts: tuple[Account, ...]


@dataclass(frozen=True, slots=True)
class BudgetReply:
    refused: int  # index of the first line without room, -1 when reserved
    used: tuple[int, ...]  # per line: spent + reserved (micro-dollars), after the call


@dataclass(slots=True)
class _Account:
    expire_at: float
    slot_ms: int
    spent: int = 0
    tokens: int = 0
    held: dict[str, tuple[int, int, float]] = field(default_factory=dict)  # id -> amounts, expiry
    done: dict[str, float] = field(default_factory=dict)  # settled id -> remembered until
    slices: dict[int, tuple[int, int]] = field(default_factory=dict)  # rolling: slot -> amounts

    def purge(self, now: float) -> None:
        for rid in [rid for rid, (_, _, until) in self.held.items() if until <= now]:
            del self.held[rid]
        for rid in [rid for rid, until in self.done.items() if until <= now]:
            del self.done[rid]
        if self.slot_ms:
            oldest = int(now * 1000) // self.slot_ms - ROLLING_SLOTS
            for slot in [slot for slot in self.slices if slot <= oldest]:
                money, tokens = self.slices.pop(slot)
                self.spent -= money
                self.tokens -= tokens

    def used(self) -> tuple[int, int]:
        return (
            self.spent + sum(c for c, _, _ in self.held.values()),
            self.tokens + sum(t for _, t, _ in self.held.values()),
        )

    def charge(self, cost: int, tokens: int, now: float) -> None:
        self.spent += cost
        self.tokens += tokens
        if self.slot_ms:
            slot = int(now * 1000) // self.slot_ms
            money, counted = self.slices.get(slot, (0, 0))
            self.slices[slot] = (money + cost, counted + tokens)


class MemoryAccounts:
    """This process's budget accounts, bounded: accounts of ended periods are dropped first."""

    def __init__(self, max_accounts: int = 4096) -> None:
        self._accounts: dict[str, _Account] = {}
        self._max = max_accounts

    def _account(self, where: Account, now: float) -> _Account:
        account = self._accounts.get(where.key)
        if account is None or account.expire_at <= now:
            if len(self._accounts) >= self._max:
                for stale in [k for k, a in self._accounts.items() if a.expire_at <= now]:
                    del self._accounts[stale]
                if len(self._accounts) >= self._max:
                    del self._accounts[next(iter(self._accounts))]
            account = self._accounts[where.key] = _Account(where.expire_at, where.slot_ms)
        account.expire_at = max(account.expire_at, where.expire_at)
        account.purge(now)
        return account

    def reserve(self, lines: list[BudgetLine], rid: str, ttl_s: float, now: float) -> BudgetReply:
        accounts = [self._account(line.account, now) for line in lines]
        for index, (line, account) in enumerate(zip(lines, accounts, strict=True)):
            money, tokens = account.used()
            over_money = money + line.cost > line.limit
            over_tokens = line.limit_tokens > 0 and tokens + line.tokens > line.limit_tokens
            if line.enforce and (over_money or over_tokens):
                return BudgetReply(index, tuple(a.used()[0] for a in accounts))
        for line, account in zip(lines, accounts, strict=True):
            account.held[rid] = (line.cost, line.tokens, now + ttl_s)
        return BudgetReply(-1, tuple(a.used()[0] for a in accounts))

    def settle(self, charges: list[BudgetCharge], ttl_s: float, now: float) -> dict[str, int]:
        """Settles each charge on its accounts, once per id: the settled spend per account."""
        spent: dict[str, int] = {}
        for charge in charges:
            for where in charge.accounts:
                account = self._account(where, now)
                if charge.rid not in account.done:
                    account.held.pop(charge.rid, None)
                    account.charge(charge.cost, charge.tokens, now)
                    account.done[charge.rid] = now + ttl_s
                spent[where.key] = account.spent
        return spent
