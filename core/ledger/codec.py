"""A LedgerRecord as a flat row (both stores' columns) and as a JSON line (the spill file)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import orjson

from core.ledger.record import LedgerRecord
from core.spend.usage import UsageSplit

# The raw table's columns after request_id and period, in the order `row` gives them.
COLUMNS = (
    "ts",
    "tenant",
    "tags",
    "api",
    "requested_model",
    "served_model",
    "provider",
    "key_id",
    "input",
    "cache_read",
    "cache_write_5m",
    "cache_write_1h",
    "output",
    "reasoning",
    "estimated",
    "cost_micros",
    "price_version",
    "unpriced",
    "outcome",
    "attempts",
    "latency_ms",
    "ttft_ms",
    # Added after the first release: last, so a table migrated by ALTER TABLE ... ADD COLUMN
    # (core.ledger.sqlite, core.ledger.postgres: MIGRATIONS) has the same column order.
    "saved_input",
    "saved_output",
    "trace_id",
    # The media units (core.spend.usage): images made, milliseconds of audio transcribed,
    # characters spoken.
    "images",
    "audio_ms",
    "characters",
)
# Columns added after the first release: (name, "int" or "text", the value old rows and old
# spill lines read). Each store adds the missing ones to an existing table when it opens it
# (ALTER TABLE ... ADD COLUMN, with that value as the SQL default).
MIGRATIONS: tuple[tuple[str, str, int | None], ...] = (
    ("saved_input", "int", 0),
    ("saved_output", "int", 0),
    ("trace_id", "text", None),
    ("images", "int", 0),
    ("audio_ms", "int", 0),
    ("characters", "int", 0),
)


def sql_default(value: int | None) -> str:
    return "NULL" if value is None else str(value)


def row(r: LedgerRecord) -> tuple[Any, ...]:
    """The record's values in COLUMNS order (tags as a JSON object, kept for exports)."""
    u = r.usage
    tags = orjson.dumps(dict(r.tags)).decode()
    return (
        r.ts,
        r.tenant,
        tags,
        r.api,
        r.requested_model,
        r.served_model,
        r.provider,
        r.key_id,
        u.input,
        u.cache_read,
        u.cache_write_5m,
        u.cache_write_1h,
        u.output,
        u.reasoning,
        u.estimated,
        r.cost_micros,
        r.price_version,
        r.unpriced,
        r.outcome,
        r.attempts,
        r.latency_ms,
        r.ttft_ms,
        r.saved_input,
        r.saved_output,
        r.trace_id,
        u.images,
        u.audio_ms,
        u.characters,
    )


def dumps(r: LedgerRecord) -> bytes:
    """One spill-file line (newline included)."""
    values = dict(zip(COLUMNS, row(r), strict=True))
    values["request_id"] = r.request_id
    values["tags"] = [list(pair) for pair in r.tags]
    return orjson.dumps(values) + b"\n"


# The spill line's keys are the dataclasses' field names: read back by name, written once.
_USAGE_FIELDS = tuple(f.name for f in fields(UsageSplit))
_RECORD_FIELDS = tuple(f.name for f in fields(LedgerRecord) if f.name not in ("usage", "tags"))


def loads(line: bytes) -> LedgerRecord:
    v = orjson.loads(line)
    # A line written before the media units had columns lacks them: zero, as old rows read.
    usage = UsageSplit(**{name: v[name] for name in _USAGE_FIELDS if name in v})
    tags = tuple((str(k), str(val)) for k, val in v["tags"])
    added = {name: old for name, _, old in MIGRATIONS}  # a line written before they existed
    values = {
        name: v[name] if name not in added else v.get(name, added[name]) for name in _RECORD_FIELDS
    }
    return LedgerRecord(usage=usage, tags=tags, **values)
