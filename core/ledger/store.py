"""The ledger's storage seam: two implementations (SQLite embedded, PostgreSQL for several
replicas) behind one contract, checked by the same contract tests on both.

The retained horizon: retention drops whole raw partitions, and idempotence on request id
lives in the raw rows, so a record of a dropped partition written again (replayed from a spill
file, or held in a queue past retention) would be counted in the rollups a second time. Each
store keeps the start of its oldest kept partition in the database (set by `drop_before` in
the drop's own transaction, read by `write` in the batch's, serialized with drops), so every
replica and every restart agrees, whatever its clock or retention setting, and `write` skips
records older than it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.ledger.record import LedgerRecord

log = logging.getLogger("interlock.ledger")

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
    images: int = 0
    audio_ms: int = 0  # audio transcribed, milliseconds
    characters: int = 0  # text spoken


@dataclass(frozen=True, slots=True)
class UsagePage:
    rows: list[UsageRow]
    next_cursor: str | None


def unexpired(records: Sequence[LedgerRecord], horizon: float | None) -> list[LedgerRecord]:
    """The records at or after the retained horizon (None: nothing dropped yet)."""
    if horizon is None:
        return list(records)
    return [r for r in records if r.ts >= horizon]


def note_expired(count: int) -> None:
    if count:
        log.warning(
            "the ledger skipped %d records older than its retained horizon: their raw "
            "partition was dropped, so writing them could count them twice",
            count,
        )


class LedgerStore(Protocol):
    expired: int  # records `write` skipped as older than the retained horizon

    async def open(self) -> None:
        """Connect and create or migrate the schema; idempotent, and safe to call concurrently
        (the writer opens the store at its first flush, the usage API at its first query)."""
        ...

    async def write(self, records: Sequence[LedgerRecord]) -> int:
        """Append a batch in one transaction, idempotent on request_id (a record written twice
        is stored once), updating the rollups for the rows actually inserted; returns how many
        were new. Records older than the retained horizon are skipped (counted in `expired`,
        logged). Raises on a database failure (the writer queues and retries)."""
        ...

    async def usage(self, query: UsageQuery) -> UsagePage:
        """Totals per group over the range, from the rollups where the grouping allows."""
        ...

    async def read(self, text: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        """A read-only query in the store's dialect (the dashboard's raw-record panels)."""
        ...

    async def drop_before(self, cutoff: float) -> int:
        """Retention: drops whole time partitions of raw records older than `cutoff`, and
        moves the retained horizon to the start of the oldest partition kept."""
        ...

    async def close(self) -> None: ...
