"""The ledger's storage seam: two implementations (SQLite embedded, PostgreSQL for several
replicas) behind one contract, checked by the same contract tests on both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from core.ledger.record import LedgerRecord

# What a usage query may group by: a time bucket, a dimension, or one tag key ("tag:<key>").
TIME_BUCKETS = ("minute", "hour", "day")
DIMENSIONS = ("tenant", "model", "provider", "served_model")


@dataclass(frozen=True, slots=True)
class UsageQuery:
    start: float  # unix seconds, inclusive
    end: float  # exclusive
    tenant: str | None  # None: every tenant (operators only; the API enforces who may)
    group_by: tuple[str, ...] = ()
    filters: dict[str, str] = field(default_factory=dict)  # dimension or tag:<key> -> value
    limit: int = 100
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class UsageRow:
    group: dict[str, str]
    requests: int
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    cost_micros: int


@dataclass(frozen=True, slots=True)
class UsagePage:
    rows: list[UsageRow]
    next_cursor: str | None


class LedgerStore(Protocol):
    async def open(self) -> None:
        """Connect and create or migrate the schema; idempotent, and safe to call concurrently
        (the writer opens the store at its first flush, the usage API at its first query)."""
        ...

    async def write(self, records: Sequence[LedgerRecord]) -> int:
        """Append a batch in one transaction, idempotent on request_id (a record written twice
        is stored once), updating the rollups for the rows actually inserted; returns how many
        were new. Raises on a database failure (the writer queues and retries)."""
        ...

    async def usage(self, query: UsageQuery) -> UsagePage:
        """Totals per group over the range, from the rollups where the grouping allows."""
        ...

    async def drop_before(self, cutoff: float) -> int:
        """Retention: drops whole time partitions of raw records older than `cutoff`."""
        ...

    async def close(self) -> None: ...
