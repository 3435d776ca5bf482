"""Time partitions of the raw records (a day or a calendar month, UTC) and the rollup grains.

A partition is an integer: days or months since the epoch, so both stores name, create and
drop the same periods, and a record's period follows from its own timestamp (a replayed record
lands in the partition it was first written to). A period ends where the next begins.
"""

from __future__ import annotations

import datetime as dt

GRAINS = {"minute": 60, "hour": 3600, "day": 86400}  # rollup grains, in seconds
_DAY = 86400


def period_of(ts: float, partition: str) -> int:
    if partition == "day":
        return int(ts // _DAY)
    moment = dt.datetime.fromtimestamp(ts, dt.UTC)
    return (moment.year - 1970) * 12 + moment.month - 1


def period_start(period: int, partition: str) -> float:
    """Where `period` begins, in unix seconds (the inverse of period_of at a boundary)."""
    if partition == "day":
        return float(period * _DAY)
    years, month = divmod(period, 12)
    return dt.datetime(1970 + years, month + 1, 1, tzinfo=dt.UTC).timestamp()


def bucket(ts: float, grain_s: int) -> int:
    return int(ts // grain_s) * grain_s
