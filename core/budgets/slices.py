"""Budget slices: a replica reserves most requests against a slice of the budget it holds,
without a store call.

A call to the shared store per attempt is what a reservation used to cost (a Redis round trip:
most of the budget stage's CPU, and every replica's traffic on one hash slot). Instead, when a
replica reserves through the store it also asks for a slice: its own hold on the account
(core.state.budget_accounts), up to SLICE_DRAWS times the request's estimate and at most
1/SLICE_SHARE of the room left. Later requests draw their estimate from the slice locally while
it has room for them on every budget they fall under; their settlement takes the draw back out
of the hold as it adds the actual spend.

What this changes, and what it does not:

- Overshoot: none added. A slice is an ordinary reservation in the store, counted against the
  limit before it is granted, so a draw is as safe as a reservation of its own; the bound of
  core.budgets.enforce holds as it was.
- Early refusal: a request the store refuses may have fitted in room other replicas hold as
  undrawn slices: at most the sum of their slices, each at most 1/16 of the room left when it
  was granted (so they shrink as the budget runs out) and at most SLICE_DRAWS estimates.
- Staleness: a slice is used for SLICE_WINDOW_S after it was granted; then the next request
  goes to the store (giving the slice's spare room back in the same call) and the budget
  headers are fresh again. A slice nobody drew from for that long is given back by the
  settler's next batch (`sweep`), and on shutdown. A replica that dies leaves its slice held
  until the reservation TTL, like any reservation.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass

from core.state.budget_accounts import Account, BudgetCharge, Slice

SLICE_DRAWS = 32  # a slice holds at most this many of the request's estimates
SLICE_WINDOW_S = 10.0  # a slice is drawn from for this long after it was granted
MAX_SLICES = 4096  # accounts a replica keeps slices for (accounts are bounded by config)


@dataclass(slots=True)
class _Held:
    """This replica's slice of one account, as it knows it."""

    account: Account
    room: int = 0  # micro-dollars left to draw
    room_tokens: int = 0
    base: int = 0  # the account's use without this slice's room, when last told
    until: float = 0.0  # drawn from until then (monotonic-free: unix seconds)


class Slices:
    """The replica's slices, one per account; `id` names them in the store."""

    def __init__(self) -> None:
        self.id = f"slice.{secrets.token_hex(6)}"
        self._held: dict[str, _Held] = {}
        self._ids = (f"{self.id}.r{n}" for n in itertools.count())

    def draw(
        self, accounts: tuple[Account, ...], cost: int, tokens: int, now: float
    ) -> tuple[int, ...] | None:
        """Takes `cost` and `tokens` from the slice of every account, or from none (None: a
        store call is needed); on success, each account's use as this replica sees it."""
        held = [self._held.get(a.key) for a in accounts]
        for h in held:
            if h is None or h.until <= now or h.room < cost or h.room_tokens < tokens:
                return None
        used = []
        for h in held:
            assert h is not None
            h.room -= cost
            h.room_tokens -= tokens
            h.base += cost
            used.append(h.base)
        return tuple(used)

    def ask(self, account: Account, cost: int, tokens: int) -> Slice:
        """What a store call asks for this account's slice: its spare room back (dropped here
        at once, whatever the call answers), and up to SLICE_DRAWS estimates more."""
        held = self._held.get(account.key)
        spare, spare_tokens = (held.room, held.room_tokens) if held is not None else (0, 0)
        if held is not None:
            held.room = held.room_tokens = 0
        want = SLICE_DRAWS * cost if len(self._held) < MAX_SLICES or held else 0
        want_tokens = SLICE_DRAWS * tokens if want else 0
        return Slice(self.id, spare, spare_tokens, want, want_tokens)

    def granted(self, account: Account, grant: tuple[int, int], used: int, now: float) -> int:
        """The store's answer for the account's slice; the account's use without the room."""
        money, tokens = grant
        if not (money or tokens):
            return used
        held = self._held.get(account.key)
        if held is None:
            held = self._held[account.key] = _Held(account)
        # Added, not set: concurrent calls each hold a grant in the store.
        held.account = account
        held.room += money
        held.room_tokens += tokens
        held.base = used - held.room
        held.until = now + SLICE_WINDOW_S
        return held.base

    def sweep(self, now: float, everything: bool = False) -> list[BudgetCharge]:
        """Slices whose window ended (all of them, on shutdown): their spare room back to the
        store, as charges of nothing drawn from the slice."""
        out = []
        for key, held in list(self._held.items()):  # bounded: MAX_SLICES
            if not everything and held.until > now:
                continue
            del self._held[key]
            if held.room or held.room_tokens:
                accounts = (held.account,)
                rid = next(self._ids)
                out.append(BudgetCharge(rid, 0, 0, accounts, self.id, held.room, held.room_tokens))
        return out
