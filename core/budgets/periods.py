"""Budget periods: calendar days, ISO weeks (from Monday) and months in the budget's timezone
(UTC by default), or a rolling window.

A rolling window is kept as SLOTS slots of window/SLOTS each (core.state.budget_accounts): spend
counts while its slot is one of the last SLOTS, so it ages out between window - window/SLOTS
and window after it was settled (a 24h window: in slots of 24 minutes).

`PeriodClock` caches a budget's current window until it ends: working out a calendar period
from a timestamp costs a few microseconds of datetime arithmetic that every reservation would
otherwise pay again.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from core.state.budget_accounts import ROLLING_SLOTS as SLOTS
from shared.config import BudgetConfig


@dataclass(frozen=True, slots=True)
class Window:
    id: str  # names the period (alerts fire once per threshold per id): "2026-12-02", "2026-W49",
    # "2026-12"; rolling: the window's length and its count since the epoch, "r86400-20424"
    start: float  # unix seconds
    end: float  # calendar: the period's end; rolling: when the oldest slot ages out next
    account: str  # the store account's period part: the id; rolling: "r<window seconds>"
    slot_ms: int = 0  # rolling: the width of one slot; 0 for a calendar period
    valid_from: float = 0.0  # this window is current from here until `end`


def window(period: str, now: float, tz: tzinfo = UTC, window_s: int = 0) -> Window:
    """The period (day, week, month in `tz`, or a rolling `window_s`) holding `now`. Periods
    are wall-clock midnights: arithmetic on an aware datetime is wall-clock and its UTC offset
    is worked out again, so a day across a daylight-saving change lasts 23 or 25 hours."""
    if period == "rolling":
        return _rolling(window_s, now)
    local = datetime.fromtimestamp(now, tz)
    day = datetime(local.year, local.month, local.day, tzinfo=tz)
    if period == "day":
        return _calendar(day.strftime("%Y-%m-%d"), day, day + timedelta(days=1))
    if period == "week":
        start = day - timedelta(days=day.weekday())
        year, week, _ = start.isocalendar()
        return _calendar(f"{year}-W{week:02d}", start, start + timedelta(days=7))
    start = day.replace(day=1)
    end = datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=tz)
    return _calendar(start.strftime("%Y-%m"), start, end)


def _calendar(name: str, start: datetime, end: datetime) -> Window:
    begin = start.timestamp()
    return Window(name, begin, end.timestamp(), name, 0, begin)


def _rolling(window_s: int, now: float) -> Window:
    slot_ms = window_s * 1000 // SLOTS
    current = int(now * 1000) // slot_ms
    end = (current + 1) * slot_ms / 1000
    return Window(
        f"r{window_s}-{int(now) // window_s}",
        end - window_s,
        end,
        f"r{window_s}",
        slot_ms,
        current * slot_ms / 1000,
    )


class PeriodClock:
    """One budget's current window, computed again only once it has ended."""

    __slots__ = ("_current", "_period", "_tz", "_window_s")

    def __init__(self, budget: BudgetConfig) -> None:
        self._period = budget.period
        self._tz: tzinfo = UTC if budget.timezone == "UTC" else zoneinfo.ZoneInfo(budget.timezone)
        self._window_s = budget.window_s
        self._current: Window | None = None

    def at(self, now: float) -> Window:
        current = self._current
        if current is None or not current.valid_from <= now < current.end:
            current = self._current = window(self._period, now, self._tz, self._window_s)
        return current
