"""The `budgets` section: money as exact micro-dollars, scopes, periods, actions and alerts,
and every bad value a ConfigError naming its key. Plus the pure parts budgets rest on:
UTC periods and which budgets apply to an attempt."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core.budgets.ask import budget_ask
from core.budgets.levels import BudgetLevels
from core.budgets.periods import PeriodClock, window
from core.limits.admission import prompt_estimate
from shared.config import ConfigError, parse_config

BASE: dict[str, Any] = {
    "providers": {"mock": {"kind": "mock", "allow_any_model": True}},
    "models": {"big": {"provider": "mock", "model": "big"}, "small": {"provider": "mock"}},
}


def budgets(entries: dict[str, Any]) -> Any:
    return parse_config({**BASE, "budgets": entries}, "test", {}).budgets


def test_a_full_budget() -> None:
    (budget,) = budgets(
        {
            "anthropic-low": {
                "provider": "mock",
                "tags": {"priority": "low"},
                "period": "week",
                "limit": "200.10",
                "limit_tokens": 1000,
                "action": "downgrade",
                "downgrade_to": "small",
                "alerts": [100, 50, 80],
                "webhook": "https://ops.example/hook",
            }
        }
    )
    assert budget.limit_micros == 200_100_000
    assert budget.tags == (("priority", "low"),)
    assert budget.alerts == (50, 80, 100)
    assert (budget.period, budget.action, budget.downgrade_to) == ("week", "downgrade", "small")


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({"limit": "abc"}, "budgets.b.limit"),
        ({"limit": 0}, "budgets.b.limit"),
        ({"limit": "0.0000001"}, "budgets.b.limit"),
        ({"limit": True}, "budgets.b.limit"),
        ({"limit": 1, "period": "year"}, "budgets.b.period"),
        ({"limit": 1, "action": "pray"}, "budgets.b.action"),
        ({"limit": 1, "action": "downgrade"}, "budgets.b.downgrade_to"),
        ({"limit": 1, "action": "downgrade", "downgrade_to": "nope"}, "budgets.b.downgrade_to"),
        ({"limit": 1, "alerts": [0]}, "budgets.b.alerts"),
        ({"limit": 1, "webhook": "ftp://x"}, "budgets.b.webhook"),
        ({"limit": 1, "limt": 2}, "budgets.b.limt"),
        ({"limit": 1, "timezone": "Mars/Olympus"}, "budgets.b.timezone"),
        ({"limit": 1, "timezone": "../../etc/passwd"}, "budgets.b.timezone"),
        ({"limit": 1, "window": "1h"}, "budgets.b.window"),
        ({"limit": 1, "period": "rolling"}, "budgets.b.window"),
        ({"limit": 1, "period": "rolling", "window": "90s"}, "budgets.b.window"),
        ({"limit": 1, "period": "rolling", "window": "91d"}, "budgets.b.window"),
        (
            {"limit": 1, "period": "rolling", "window": "1h", "timezone": "UTC"},
            "budgets.b.timezone",
        ),
    ],
)
def test_bad_values_name_their_key(entry: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        budgets({"b": entry})


def test_names_are_header_safe() -> None:
    with pytest.raises(ConfigError, match="budget name"):
        budgets({"spend\r\nx-evil": {"limit": 1}})


def test_periods_are_calendar_aligned_in_utc() -> None:
    now = datetime(2026, 12, 31, 23, 59, tzinfo=UTC).timestamp()
    day, week, month = window("day", now), window("week", now), window("month", now)
    assert day.id == "2026-12-31" and day.end == datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    assert week.id == "2026-W53" and week.start == datetime(2026, 12, 28, tzinfo=UTC).timestamp()
    assert month.id == "2026-12" and month.end == day.end


def test_calendar_periods_in_a_timezone_follow_its_wall_clock() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # 2026-10-25: the clocks go back an hour; the day is 25 hours long.
    now = datetime(2026, 10, 25, 12, tzinfo=berlin).timestamp()
    day = window("day", now, berlin)
    assert day.id == "2026-10-25" and day.end - day.start == 25 * 3600
    assert day.start == datetime(2026, 10, 24, 22, tzinfo=UTC).timestamp()
    # Just before Berlin's midnight is already the next day in UTC, not yet in Berlin.
    late = datetime(2026, 12, 31, 23, 30, tzinfo=berlin).timestamp()
    assert window("day", late, berlin).id == "2026-12-31"
    assert window("day", late).id == "2026-12-31"
    assert window("month", late + 3600, berlin).id == "2027-01"
    assert window("month", late + 3600).id == "2026-12"
    week = window("week", now, berlin)
    assert week.id == "2026-W43" and week.end - week.start == (7 * 24 + 1) * 3600


def test_a_rolling_window_is_kept_in_sixty_slots() -> None:
    (budget,) = budgets({"b": {"limit": 1, "period": "rolling", "window": "24h"}})
    assert (budget.period, budget.window_s, budget.timezone) == ("rolling", 86400, "UTC")
    now = datetime(2026, 12, 2, 10, 5, tzinfo=UTC).timestamp()
    w = window("rolling", now, window_s=86400)
    assert w.slot_ms == 24 * 60 * 1000 and w.account == "r86400"
    assert w.valid_from <= now < w.end and w.end - w.valid_from == 24 * 60
    assert w.end - w.start == 86400


def test_a_period_clock_reuses_its_window_until_it_ends() -> None:
    (budget,) = budgets({"b": {"limit": 1, "period": "day", "timezone": "Asia/Tokyo"}})
    clock = PeriodClock(budget)
    now = datetime(2026, 12, 2, 14, 59, 59, tzinfo=UTC).timestamp()  # 23:59:59 in Tokyo
    first = clock.at(now)
    assert clock.at(now + 0.5) is first and first.id == "2026-12-02"
    assert clock.at(now + 1).id == "2026-12-03"


def test_tags_and_the_estimate_a_reservation_prices() -> None:
    payload = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 50, "n": 2}
    tags = (("env", "prod"), ("project", "search"))
    ask = budget_ask("t", "req", "big", payload, 120, tags, prompt_estimate(payload))
    assert ask.tags == tags
    assert ask.max_output_tokens == 100 and ask.input_tokens > 0
    assert budget_ask("t", "r", "e", {"input": "x"}, 7, (), 7).max_output_tokens == 0


def test_budget_levels_read_what_the_store_last_said() -> None:
    day, rolling = budgets(
        {
            "day": {"limit": "1.00"},
            "roll": {"limit": "2.00", "period": "rolling", "window": "1h"},
        }
    )
    levels = BudgetLevels([day, rolling])
    now = datetime(2026, 12, 2, 23, 0, tzinfo=UTC).timestamp()
    assert levels.used_share("day", now) is None and levels.used_share("nope", now) is None
    levels.saw(day, window("day", now), 800_000)
    levels.saw(rolling, window("rolling", now, window_s=3600), 500_000)
    assert levels.used_share("day", now) == 0.8
    assert levels.used_share("roll", now) == 0.25
    tomorrow = now + 3600
    assert levels.used_share("day", tomorrow) == 0.0  # a new day starts empty
    assert levels.used_share("roll", tomorrow) == 0.25  # a rolling window keeps its reading
