"""Rollup deltas of a batch: what the records actually inserted add to each rollup row.

One row per (grain, bucket, tenant, tag, model, provider, served model): every record counts
once under the empty tag (the tenant's totals) and once under each of its tags, at each grain.
Deltas are summed per key before the upsert, so a batch touches each rollup row once, and keys
are sorted so concurrent writers (several replicas) lock rows in the same order.
"""

from __future__ import annotations

from collections.abc import Iterable

from core.ledger.periods import GRAINS, bucket
from core.ledger.record import LedgerRecord

RollupKey = tuple[str, int, str, str, str, str, str, str]
# requests, input (uncached), cache reads, cache writes, output, cost in micro-dollars, then
# the media units: images, milliseconds of audio, characters
Totals = list[int]
KEY_COLUMNS = ("grain", "bucket", "tenant", "tag_key", "tag_value", "model", "provider", "served")
SUM_COLUMNS = (
    *("requests", "input_tokens", "cache_read", "cache_write", "output_tokens", "cost"),
    *("images", "audio_ms", "characters"),
)
# Sums added after the first release: each store adds them, as 0, to an older rollup table
# when it opens it (the rows it holds were made before the units were counted).
ADDED_SUMS = ("images", "audio_ms", "characters")
NO_TAG = ("", "")


def deltas(records: Iterable[LedgerRecord]) -> list[tuple[RollupKey, Totals]]:
    """Summed per minute first (records of one minute share their keys), then the minute rows
    summed into hours and days: the per-record work is one key per tag, not three."""
    minutes: dict[tuple[int, str, str, str, str, str, str], Totals] = {}
    for r in records:
        u = r.usage
        minute = int(r.ts // 60) * 60
        model, provider, served = r.requested_model, r.provider or "", r.served_model or ""
        for tag_key, tag_value in (NO_TAG, *r.tags):
            key = (minute, r.tenant, tag_key, tag_value, model, provider, served)
            total = minutes.get(key)
            if total is None:
                total = minutes[key] = [0] * len(SUM_COLUMNS)
            total[0] += 1
            total[1] += u.input
            total[2] += u.cache_read
            total[3] += u.cache_write_5m + u.cache_write_1h
            total[4] += u.output
            total[5] += r.cost_micros
            total[6] += u.images
            total[7] += u.audio_ms
            total[8] += u.characters
    sums: dict[RollupKey, Totals] = {}
    for (minute, tenant, tag_key, tag_value, model, provider, served), totals in minutes.items():
        for grain, seconds in GRAINS.items():
            rollup = (grain, bucket(minute, seconds), tenant, tag_key, tag_value, model)
            row_key: RollupKey = (*rollup, provider, served)
            row = sums.get(row_key)
            if row is None:
                sums[row_key] = list(totals)
            else:
                for i, value in enumerate(totals):
                    row[i] += value
    return sorted(sums.items())
