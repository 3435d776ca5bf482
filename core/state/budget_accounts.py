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

Slices (core.budgets.slices): a line may carry a `Slice` for the replica's own hold on the
account (one per replica, id `slice.id`). Before the line is checked, the replica's undrawn
room (`spare`) leaves that hold; after the line is reserved, the hold grows by up to `want`,
and at most 1/SLICE_SHARE of the room left (nothing when that is less than the line's own
cost: a slice that cannot cover one more such request is no use). A charge drawn from a slice
(`drawn`) takes its draw out of that hold as it settles. The replica then reserves further
requests against its slice without a call; the slice is an ordinary reservation here, so it
counts against the limit and expires like one.

A rolling account (`slot_ms` > 0) keeps settled spend per slot of time as well as its running
sum: on every call, slots older than the last `ROLLING_SLOTS` leave the sum (core.budgets.periods
says what that means for the window).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ROLLING_SLOTS = 60  # the slots a rolling window is kept in
SLICE_SHARE = 16  # a slice takes at most this fraction (1/16) of an account's room left


@dataclass(frozen=True, slots=True)
class Account:
    """Where a budget's period is kept."""

    key: str
    expire_at: float  # unix seconds: the period's end plus the reservation TTL
    slot_ms: int = 0  # rolling windows: one slot's width; 0: a calendar period


@dataclass(frozen=True, slots=True)
class Slice:
    """A replica's hold on one account: `spare` given back first, then up to `want` more."""

    id: str
    spare: int = 0  # micro-dollars
    spare_tokens: int = 0
    want: int = 0
    want_tokens: int = 0


@dataclass(frozen=True, slots=True)
class BudgetLine:
    """One budget's part of a reservation."""

    account: Account
    limit: int  # micro-dollars
    limit_tokens: int  # 0: no token cap
    cost: int  # micro-dollars reserved
    tokens: int
    enforce: bool  # False (warn): reserved and counted, never refused
    slice: Slice | None = None


@dataclass(frozen=True, slots=True)
class BudgetCharge:
    """A reservation settled at its actual amounts, on every account it was held on."""

    rid: str
    cost: int
    tokens: int
    accounts: tuple[Account, ...]
    slice: str = ""  # the slice the reservation was drawn from ("": its own hold `rid`)
    drawn: int = 0  # what it drew from that slice, on each account
    drawn_tokens: int = 0


@dataclass(frozen=True, slots=True)
class BudgetReply:
    refused: int  # index of the first line without room, -1 when reserved
    used: tuple[int, ...]  # per line: spent + reserved (micro-dollars), after the call
    granted: tuple[tuple[int, int], ...] = ()  # per line: added to its slice (money, tokens)


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

    def give_back(self, sid: str, money: int, tokens: int) -> None:
        """Takes up to these amounts out of the hold `sid` (a slice), dropping it when empty."""
        held = self.held.get(sid)
        if held is None:
            return
        left_money, left_tokens = held[0] - min(money, held[0]), held[1] - min(tokens, held[1])
        if left_money or left_tokens:
            self.held[sid] = (left_money, left_tokens, held[2])
        else:
            del self.held[sid]

    def grow(self, line: BudgetLine, ttl_s: float, now: float) -> tuple[int, int]:
        """The line's slice grown by what it asked for, within its share of the room left."""
        ask = line.slice
        if ask is None or not (ask.want or ask.want_tokens):
            return 0, 0
        money, tokens = self.used()
        grant, grant_tokens = granted(line, ask, money, tokens)
        if grant or grant_tokens:
            held = self.held.get(ask.id, (0, 0, 0.0))
            self.held[ask.id] = (held[0] + grant, held[1] + grant_tokens, now + ttl_s)
        return grant, grant_tokens

    def charge(self, cost: int, tokens: int, now: float) -> None:
        self.spent += cost
        self.tokens += tokens
        if self.slot_ms:
            slot = int(now * 1000) // self.slot_ms
            money, counted = self.slices.get(slot, (0, 0))
            self.slices[slot] = (money + cost, counted + tokens)


def granted(line: BudgetLine, ask: Slice, money: int, tokens: int) -> tuple[int, int]:
    """What a slice may grow by, `money` / `tokens` being the account's use after the
    line's own reservation (the Redis script computes the same). Warn lines too: a slice is
    room other replicas see as used, so none is held past the limit, whatever the action."""
    grant = min(ask.want, max(0, line.limit - money) // SLICE_SHARE)
    grant_tokens = ask.want_tokens
    if line.limit_tokens > 0:
        grant_tokens = min(grant_tokens, max(0, line.limit_tokens - tokens) // SLICE_SHARE)
    if grant < line.cost or grant_tokens < line.tokens:
        return 0, 0
    return grant, grant_tokens


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
        for line, account in zip(lines, accounts, strict=True):
            if line.slice is not None:
                account.give_back(line.slice.id, line.slice.spare, line.slice.spare_tokens)
        for index, (line, account) in enumerate(zip(lines, accounts, strict=True)):
            money, tokens = account.used()
            over_money = money + line.cost > line.limit
            over_tokens = line.limit_tokens > 0 and tokens + line.tokens > line.limit_tokens
            if line.enforce and (over_money or over_tokens):
                return BudgetReply(index, tuple(a.used()[0] for a in accounts))
        grants = []
        for line, account in zip(lines, accounts, strict=True):
            account.held[rid] = (line.cost, line.tokens, now + ttl_s)
            grants.append(account.grow(line, ttl_s, now))
        return BudgetReply(-1, tuple(a.used()[0] for a in accounts), tuple(grants))

    def settle(self, charges: list[BudgetCharge], ttl_s: float, now: float) -> dict[str, int]:
        """Settles each charge on its accounts, once per id: the settled spend per account."""
        spent: dict[str, int] = {}
        for charge in charges:
            for where in charge.accounts:
                account = self._account(where, now)
                if charge.rid not in account.done:
                    account.held.pop(charge.rid, None)
                    if charge.slice:
                        account.give_back(charge.slice, charge.drawn, charge.drawn_tokens)
                    account.charge(charge.cost, charge.tokens, now)
                    account.done[charge.rid] = now + ttl_s
                spent[where.key] = account.spent
        return spent
