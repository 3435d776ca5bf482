"""Budget periods: calendar days, ISO weeks (from Monday) and months, aligned in UTC."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True, slots=True)
class Window:
    id: str  # names the period in store keys: "2026-12-02", "2026-W49", "2026-12"
    start: float  # unix seconds
    end: float


def window(period: str, now: float) -> Window:
    """The period (day, week or month) holding `now`, in UTC."""
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return Window(day.strftime("%Y-%m-%d"), day.timestamp(), (day + timedelta(1)).timestamp())
    if period == "week":
        start = day - timedelta(days=day.weekday())
        year, week, _ = start.isocalendar()
        return Window(f"{year}-W{week:02d}", start.timestamp(), (start + timedelta(7)).timestamp())
    start = day.replace(day=1)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return Window(start.strftime("%Y-%m"), start.timestamp(), end.timestamp())
