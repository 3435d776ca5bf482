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
# requests, input (uncached), cache reads, cache writes, output, cost in micro-dollars
Totals = list[int]
KEY_COLUMNS = ("grain", "bucket", "tenant", "tag_key", "tag_value", "model", "provider", "served")
SUM_COLUMNS = ("requests", "input_tokens", "cache_read", "cache_write", "output_tokens", "cost")
NO_TAG = ("", "")


def deltas(records: Iterable[LedgerRecord]) -> list[tuple[RollupKey, Totals]]:
    sums: dict[RollupKey, Totals] = {}
    for r in records:
        u = r.usage
        values = (1, u.input, u.cache_read, u.cache_write_5m + u.cache_write_1h, u.output)
        model, provider, served = r.requested_model, r.provider or "", r.served_model or ""
        for grain, seconds in GRAINS.items():
            start = bucket(r.ts, seconds)
            for tag_key, tag_value in (NO_TAG, *r.tags):
                key = (grain, start, r.tenant, tag_key, tag_value, model, provider, served)
                total = sums.get(key)
                if total is None:
                    sums[key] = [*values, r.cost_micros]
                else:
                    for i, value in enumerate(values):
                        total[i] += value
                    total[5] += r.cost_micros
    return sorted(sums.items())
