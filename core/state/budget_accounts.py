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
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class BudgetLine:
    """One budget's part of a reservation."""

    key: str  # the account: budget and period
    limit: int  # micro-dollars
    limit_tokens: int  # 0: no token cap
    cost: int  # micro-dollars reserved
    tokens: int
    enforce: bool  # False (warn): reserved and counted, never refused
    expire_at: float  # unix seconds: the period's end plus the reservation TTL


@dataclass(frozen=True, slots=True)
class BudgetReply:
    refused: int  # index of the first line without room, -1 when reserved
    used: tuple[int, ...]  # per line: spent + reserved (micro-dollars), after the call


@dataclass(slots=True)
class _Account:
    expire_at: float
    spent: int = 0
    tokens: int = 0
    held: dict[str, tuple[int, int, float]] = field(default_factory=dict)  # id -> amounts, expiry
    done: dict[str, float] = field(default_factory=dict)  # settled id -> remembered until

    def purge(self, now: float) -> None:
        for rid in [rid for rid, (_, _, until) in self.held.items() if until <= now]:
            del self.held[rid]
        for rid in [rid for rid, until in self.done.items() if until <= now]:
            del self.done[rid]

    def used(self) -> tuple[int, int]:
        return (
            self.spent + sum(c for c, _, _ in self.held.values()),
            self.tokens + sum(t for _, t, _ in self.held.values()),
        )


class MemoryAccounts:
    """This process's budget accounts, bounded: accounts of ended periods are dropped first."""

    def __init__(self, max_accounts: int = 4096) -> None:
        self._accounts: dict[str, _Account] = {}
        self._max = max_accounts

    def _account(self, key: str, expire_at: float, now: float) -> _Account:
        account = self._accounts.get(key)
        if account is None or account.expire_at <= now:
            if len(self._accounts) >= self._max:
                for stale in [k for k, a in self._accounts.items() if a.expire_at <= now]:
                    del self._accounts[stale]
                if len(self._accounts) >= self._max:
                    del self._accounts[next(iter(self._accounts))]
            account = self._accounts[key] = _Account(expire_at)
        account.purge(now)
        return account

    def reserve(self, lines: list[BudgetLine], rid: str, ttl_s: float, now: float) -> BudgetReply:
        accounts = [self._account(line.key, line.expire_at, now) for line in lines]
        for index, (line, account) in enumerate(zip(lines, accounts, strict=True)):
            money, tokens = account.used()
            over_money = money + line.cost > line.limit
            over_tokens = line.limit_tokens > 0 and tokens + line.tokens > line.limit_tokens
            if line.enforce and (over_money or over_tokens):
                return BudgetReply(index, tuple(a.used()[0] for a in accounts))
        for line, account in zip(lines, accounts, strict=True):
            account.held[rid] = (line.cost, line.tokens, now + ttl_s)
        return BudgetReply(-1, tuple(a.used()[0] for a in accounts))

    def settle(
        self,
        keys: list[tuple[str, float]],
        rid: str,
        cost: int,
        tokens: int,
        ttl_s: float,
        now: float,
    ) -> tuple[int, ...]:
        """Settles reservation `rid` at `cost` on each (key, expire_at): the settled spend."""
        spent = []
        for key, expire_at in keys:
            account = self._account(key, expire_at, now)
            if rid not in account.done:
                account.held.pop(rid, None)
                account.spent += cost
                account.tokens += tokens
                account.done[rid] = now + ttl_s
            spent.append(account.spent)
        return tuple(spent)
