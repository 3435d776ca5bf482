"""A usage query as SQL, written once for both stores (each supplies its dialect).

It answers from the rollups when the range falls on whole buckets of a grain no finer than
the grouped time bucket (a month's report reads ~30 day rows per group, never raw records),
else from the raw records. Tags are only in the rollups, so a tag grouping or filter needs a
range of whole minutes; at most one tag key per query (a record's tags are rolled up one by
one, so two tag keys together cannot be answered from them).

Pagination is keyset: rows come ordered by their group values, and the opaque cursor is the
last row's values (bound to the grouping it came from): the next page starts after it. The
tenant is always a WHERE condition, so no cursor or filter can reach another tenant's rows.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from core.ledger.periods import GRAINS
from core.ledger.rollup import SUM_COLUMNS
from core.ledger.store import DIMENSIONS, TIME_BUCKETS, UsageQuery, UsageRow

MAX_LIMIT = 1000  # rows per page
MAX_TIME = 253402300800  # 10000-01-01: no bucket, cursor or range reaches it
MAX_TEXT = 512  # a cursor's text value: as long as a parameter's value may be
_DAY_S = 86400
# The longest range one query may span, by what it reads (None: raw records). Raw records
# and minute rollups are read row by row; coarser rollups have one row per hour or day per
# group, so an hour-aligned range may be longer and a day-aligned one longer still.
MAX_SPAN_S: dict[str | None, int] = {
    None: 7 * _DAY_S,
    "minute": 7 * _DAY_S,
    "hour": 92 * _DAY_S,
    "day": 3660 * _DAY_S,
}
_SPAN_READS = {
    None: "that does not start and end on whole minutes",
    "minute": "on whole minutes (or grouped by minute)",
    "hour": "on whole hours (or grouped by hour)",
    "day": "",
}
TAG = "tag:"
_RAW_COLUMNS = {
    "tenant": "tenant",
    "model": "requested_model",
    "provider": "COALESCE(provider, '')",
    "served_model": "COALESCE(served_model, '')",
}
_ROLLUP_COLUMNS = {"tenant": "tenant", "model": "model", "provider": "provider"}
_ROLLUP_COLUMNS["served_model"] = "served"
_RAW_SUMS = (
    "COUNT(*)",
    "SUM(input)",
    "SUM(cache_read)",
    "SUM(cache_write_5m + cache_write_1h)",
    "SUM(output)",
    "SUM(cost_micros)",
    "SUM(images)",
    "SUM(audio_ms)",
    "SUM(characters)",
)
_ROLLUP_SUMS = tuple(f"SUM({c})" for c in SUM_COLUMNS)


@dataclass(frozen=True)
class Dialect:
    param: Callable[[int, str], str]  # (1-based index, "int" or "text") -> placeholder
    floor_int: Callable[[str], str]  # SQL for floor(expr) as an integer


@dataclass(frozen=True)
class Sql:
    text: str
    args: list[Any]
    group_by: tuple[str, ...]


def check(query: UsageQuery) -> str | None:
    """The query's one tag key (or None); ValueError naming what is wrong."""
    if not 1 <= query.limit <= MAX_LIMIT:
        raise ValueError(f"limit: expected 1 to {MAX_LIMIT}")
    if query.end <= query.start:
        raise ValueError("end: must be after start")
    _check_span(query)
    tag_keys = set()
    for field, names, allowed in (
        ("group_by", query.group_by, (*TIME_BUCKETS, *DIMENSIONS)),
        ("filters", tuple(query.filters), DIMENSIONS),
    ):
        for name in names:
            if name.startswith(TAG) and len(name) > len(TAG):
                tag_keys.add(name[len(TAG) :])
            elif name not in allowed:
                raise ValueError(f"{field}: unknown grouping {name!r}")
    if len([g for g in query.group_by if g in TIME_BUCKETS]) > 1:
        raise ValueError("group_by: at most one time bucket")
    if len(tag_keys) > 1:
        raise ValueError("group_by: at most one tag key per query")
    return tag_keys.pop() if tag_keys else None


def _check_span(query: UsageQuery) -> None:
    """A range longer than what it reads allows (MAX_SPAN_S) is refused, naming `end`."""
    grain = _grain(query)
    days = MAX_SPAN_S[grain] // _DAY_S
    if query.end - query.start > MAX_SPAN_S[grain]:
        what = " ".join(("a range", _SPAN_READS[grain])).strip()
        raise ValueError(f"end: {what} spans at most {days} days; ask for a shorter range")


def _grain(query: UsageQuery) -> str | None:
    """The coarsest rollup grain the range and time grouping allow (None: raw records)."""
    time_group = next((g for g in query.group_by if g in TIME_BUCKETS), None)
    limit = GRAINS[time_group] if time_group else GRAINS["day"]
    for grain, seconds in sorted(GRAINS.items(), key=lambda item: -item[1]):
        aligned = query.start % seconds == 0 and query.end % seconds == 0
        if seconds <= limit and aligned:
            return grain
    return None


def build(query: UsageQuery, dialect: Dialect) -> Sql:
    tag_key = check(query)
    grain = _grain(query)
    if grain is None and tag_key is not None:
        raise ValueError("start: a query by tag needs a range of whole minutes")
    args: list[Any] = []

    def arg(value: Any, kind: str) -> str:
        args.append(value)
        return dialect.param(len(args), kind)

    rollup = grain is not None
    columns = _ROLLUP_COLUMNS if rollup else _RAW_COLUMNS
    time_col = "bucket" if rollup else dialect.floor_int("ts")

    def expr(name: str) -> tuple[str, str]:
        if name in TIME_BUCKETS:
            seconds = GRAINS[name]
            return f"({time_col} - ({time_col} % {seconds}))", "int"
        if name.startswith(TAG):
            return "tag_value", "text"
        return columns[name], "text"

    where: list[str] = []
    if rollup:
        where += [f"grain = {arg(grain, 'text')}", f"tag_key = {arg(tag_key or '', 'text')}"]
        where += [f"bucket >= {arg(int(query.start), 'int')}"]
        where += [f"bucket < {arg(int(query.end), 'int')}"]
    else:
        where += [f"ts >= {arg(float(query.start), 'float')}"]
        where += [f"ts < {arg(float(query.end), 'float')}"]
    if query.tenant is not None:
        where.append(f"tenant = {arg(query.tenant, 'text')}")
    for name, value in sorted(query.filters.items()):
        where.append(f"{expr(name)[0]} = {arg(value, 'text')}")
    groups = [expr(name) for name in query.group_by]
    if query.cursor is not None and groups:
        after = decode_cursor(query.cursor, query.group_by)
        left = ", ".join(e for e, _ in groups)
        right = ", ".join(arg(v, kind) for v, (_, kind) in zip(after, groups, strict=True))
        where.append(f"({left}) > ({right})")
    sums = _ROLLUP_SUMS if rollup else _RAW_SUMS
    select = [e for e, _ in groups] + [f"COALESCE({s}, 0)" for s in sums]
    text = f"SELECT {', '.join(select)} FROM {'ledger_rollups' if rollup else 'ledger_records'}"
    text += f" WHERE {' AND '.join(where)}"
    if groups:
        order = ", ".join(str(i + 1) for i in range(len(groups)))
        text += f" GROUP BY {order} ORDER BY {order} LIMIT {arg(query.limit + 1, 'int')}"
    return Sql(text, args, query.group_by)


def rows(sql: Sql, fetched: list[tuple[Any, ...]], limit: int) -> tuple[list[UsageRow], str | None]:
    """The page's rows and the cursor to the next page (None when this is the last)."""
    n = len(sql.group_by)
    out = []
    for values in fetched[:limit]:
        sums = [int(v) for v in values[n:]]
        if not n and sums[0] == 0:
            continue  # totals over nothing: no row
        group = {name: str(v) for name, v in zip(sql.group_by, values[:n], strict=True)}
        out.append(UsageRow(group, *sums))
    if len(fetched) <= limit or not n:
        return out, None
    last = [int(v) if isinstance(v, int) else v for v in fetched[limit - 1][:n]]
    return out, encode_cursor(last, sql.group_by)


def encode_cursor(values: list[Any], group_by: tuple[str, ...]) -> str:
    raw = orjson.dumps({"g": list(group_by), "v": values})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, group_by: tuple[str, ...]) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = orjson.loads(raw)
        values = data["v"]
        same = data["g"] == list(group_by) and len(values) == len(group_by)
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise ValueError("cursor: not a cursor from this query") from None
    if not same or not all(map(_cursor_value, group_by, values)):
        raise ValueError("cursor: not a cursor from this query")
    return list(values)


def _cursor_value(name: str, value: Any) -> bool:
    """A value a page of this grouping could have ended on: a bucket's unix seconds, or a
    text without NUL (PostgreSQL's text cannot hold one) no longer than any parameter."""
    if name in TIME_BUCKETS:
        return type(value) is int and 0 <= value < MAX_TIME
    return isinstance(value, str) and len(value) <= MAX_TEXT and "\x00" not in value
