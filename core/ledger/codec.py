"""A LedgerRecord as a flat row (both stores' columns) and as a JSON line (the spill file)."""

from __future__ import annotations

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
)


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
    )


def dumps(r: LedgerRecord) -> bytes:
    """One spill-file line (newline included)."""
    values = dict(zip(COLUMNS, row(r), strict=True))
    values["request_id"] = r.request_id
    values["tags"] = [list(pair) for pair in r.tags]
    return orjson.dumps(values) + b"\n"


def loads(line: bytes) -> LedgerRecord:
    v = orjson.loads(line)
    usage = UsageSplit(
        input=v["input"],
        cache_read=v["cache_read"],
        cache_write_5m=v["cache_write_5m"],
        cache_write_1h=v["cache_write_1h"],
        output=v["output"],
        reasoning=v["reasoning"],
        estimated=v["estimated"],
    )
    return LedgerRecord(
        request_id=v["request_id"],
        ts=v["ts"],
        tenant=v["tenant"],
        tags=tuple((str(k), str(val)) for k, val in v["tags"]),
        api=v["api"],
        requested_model=v["requested_model"],
        served_model=v["served_model"],
        provider=v["provider"],
        key_id=v["key_id"],
        usage=usage,
        cost_micros=v["cost_micros"],
        price_version=v["price_version"],
        unpriced=v["unpriced"],
        outcome=v["outcome"],
        attempts=v["attempts"],
        latency_ms=v["latency_ms"],
        ttft_ms=v["ttft_ms"],
    )
