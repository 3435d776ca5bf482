"""The production ledger store: PostgreSQL, shared by every core replica (asyncpg).

Raw records live in a table partitioned by RANGE on `period` (a day or month number,
core.ledger.periods), one partition per period, created ahead at open and on demand for a
batch that reaches a new one; retention drops whole partitions (DROP TABLE: no row-by-row
delete, no bloat). A partitioned table's primary key must include the partition key, so
idempotence is on (request_id, period): a record always carries the timestamp it was first
built with, so a replay lands in the same partition and conflicts there.

A batch is one transaction: the rows are COPYed into a staging table and moved with one
`INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING request_id`, and the rollups of
exactly the returned rows are upserted in the same transaction, so a replayed batch never
counts twice. A batch holds the partition lock (an advisory lock) shared while it writes, and
drops hold it exclusive, so a batch reads the retained horizon (core.ledger.store) after any
drop that ran before it and never lands in a partition being dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import asyncpg

from core.ledger import query as q
from core.ledger.codec import COLUMNS, MIGRATIONS, row, sql_default
from core.ledger.periods import period_of, period_start
from core.ledger.record import LedgerRecord
from core.ledger.rollup import ADDED_SUMS, KEY_COLUMNS, SUM_COLUMNS, deltas
from core.ledger.store import UsagePage, UsageQuery, note_expired, unexpired

_TYPES = {
    "ts": "float8",
    "latency_ms": "float8",
    "ttft_ms": "float8",
    "estimated": "bool",
    "unpriced": "bool",
    "attempts": "int4",
    "cost_micros": "int8",
    **{c: "int8" for c in ("input", "cache_read", "cache_write_5m", "cache_write_1h")},
    **{c: "int8" for c in ("output", "reasoning", "saved_input", "saved_output")},
    **{c: "int8" for c in ("images", "audio_ms", "characters")},
}
_NOT_NULL = {"ts", "tenant", "tags", "api", "requested_model", "outcome", "attempts"}
_RECORD_TYPES = [("request_id", "text"), ("period", "int4")]
_RECORD_TYPES += [(c, _TYPES.get(c, "text")) for c in COLUMNS]
_ROLLUP_TYPES = [(c, "int8" if c == "bucket" else "text") for c in KEY_COLUMNS]
_ROLLUP_TYPES += [(c, "int8") for c in SUM_COLUMNS]
_LOCK = 0x1ED6E7  # the advisory lock that serializes partition DDL across replicas
_PARTITION_PREFIX = "ledger_records_p"
AHEAD = 3  # partitions created ahead of the current one


def _columns(types: list[tuple[str, str]], required: set[str]) -> str:
    cols = [f"{c} {t}{' NOT NULL' if c in _NOT_NULL | required else ''}" for c, t in types]
    return ", ".join(cols)


_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS ledger_records (
    {_columns(_RECORD_TYPES, {"request_id", "period"})}, PRIMARY KEY (request_id, period)
) PARTITION BY RANGE (period);
CREATE INDEX IF NOT EXISTS ledger_records_tenant_ts ON ledger_records (tenant, ts);
CREATE TABLE IF NOT EXISTS ledger_meta (name text PRIMARY KEY, value float8 NOT NULL);
CREATE TABLE IF NOT EXISTS ledger_rollups (
    {_columns(_ROLLUP_TYPES, set(KEY_COLUMNS + SUM_COLUMNS))},
    PRIMARY KEY ({", ".join(KEY_COLUMNS)})
);
"""


def _unnest_insert(table: str, types: list[tuple[str, str]]) -> str:
    names = ", ".join(c for c, _ in types)
    arrays = ", ".join(f"${i}::{t}[]" for i, (_, t) in enumerate(types, 1))
    return f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays})"


# A batch is COPYed (binary) into a per-connection staging table, then moved in one INSERT.
_STAGE = "CREATE TEMP TABLE IF NOT EXISTS ledger_stage (LIKE ledger_records) ON COMMIT DELETE ROWS"
_NAMES = [c for c, _ in _RECORD_TYPES]
_INSERT = (
    f"INSERT INTO ledger_records ({', '.join(_NAMES)}) SELECT {', '.join(_NAMES)} "
    "FROM ledger_stage ON CONFLICT DO NOTHING RETURNING request_id"
)
_UPSERT = (
    _unnest_insert("ledger_rollups", _ROLLUP_TYPES)
    + f" ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET "
    + ", ".join(f"{c} = ledger_rollups.{c} + excluded.{c}" for c in SUM_COLUMNS)
)
# Columns added since a table was created (codec.MIGRATIONS, rollup.ADDED_SUMS): a
# partitioned table's ALTER reaches every partition.
_MIGRATE = "; ".join(
    [
        f"ALTER TABLE ledger_records ADD COLUMN IF NOT EXISTS {name} "
        f"{_TYPES.get(name, 'text')} DEFAULT {sql_default(default)}"
        for name, _, default in MIGRATIONS
    ]
    + [
        f"ALTER TABLE ledger_rollups ADD COLUMN IF NOT EXISTS {name} int8 NOT NULL DEFAULT 0"
        for name in ADDED_SUMS
    ]
)
_HORIZON = "SELECT value FROM ledger_meta WHERE name = 'horizon'"
_SET_HORIZON = (
    "INSERT INTO ledger_meta (name, value) VALUES ('horizon', $1) "
    "ON CONFLICT (name) DO UPDATE SET value = GREATEST(ledger_meta.value, excluded.value)"
)
_CASTS = {"int": "::int8", "float": "::float8", "text": "::text"}
DIALECT = q.Dialect(
    param=lambda i, kind: f"${i}{_CASTS[kind]}", floor_int=lambda e: f"floor({e})::int8"
)


def _transpose(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width


class PostgresStore:
    def __init__(self, dsn: str, partition: str = "day") -> None:
        self._dsn = dsn
        self._partition = partition
        self._pool: asyncpg.Pool | None = None
        self._periods: set[int] = set()  # partitions known to exist
        self.expired = 0
        # The retained horizon as last read: which partitions a batch may need to create.
        # Another replica's drop may have moved it on; the batch's transaction reads it again.
        self._horizon: float | None = None
        # The writer and the usage API may both open the store: one pool, never two.
        self._opening = asyncio.Lock()

    def __repr__(self) -> str:  # the DSN may carry a password
        return "PostgresStore()"

    async def open(self) -> None:
        async with self._opening:
            if self._pool is None:
                self._pool = await self._connect()

    async def _connect(self) -> asyncpg.Pool:
        pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=4, timeout=5)
        try:
            async with pool.acquire() as con, con.transaction():
                await con.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
                await con.execute(_SCHEMA)
                await con.execute(_MIGRATE)
                self._horizon = await con.fetchval(_HORIZON)
            now = period_of(time.time(), self._partition)
            await self._ensure(pool, range(now - 1, now + AHEAD + 1))
        except BaseException:
            await pool.close()
            raise
        return pool

    def _ready(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the ledger store is not open")
        return self._pool

    async def _ensure(self, pool: asyncpg.Pool, periods: Any) -> None:
        missing = sorted(set(periods) - self._periods)
        if not missing:
            return
        async with pool.acquire() as con, con.transaction():
            await con.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
            for p in missing:
                await con.execute(
                    f"CREATE TABLE IF NOT EXISTS {_PARTITION_PREFIX}{p} PARTITION OF "
                    f"ledger_records FOR VALUES FROM ({p}) TO ({p + 1})"
                )
        self._periods.update(missing)

    async def write(self, records: Sequence[LedgerRecord]) -> int:
        pool = self._ready()
        kept = unexpired(records, self._horizon)  # no partition is made for the others
        await self._ensure(pool, {period_of(r.ts, self._partition) for r in kept})
        async with pool.acquire() as con, con.transaction():
            await con.execute("SELECT pg_advisory_xact_lock_shared($1)", _LOCK)
            self._horizon = await con.fetchval(_HORIZON)  # after every drop before this batch
            kept = unexpired(kept, self._horizon)
            new = await self._insert(con, kept)
        self.expired += len(records) - len(kept)
        note_expired(len(records) - len(kept))
        return new

    async def _insert(self, con: asyncpg.Connection, records: list[LedgerRecord]) -> int:
        """The batch's new rows and their rollups, inside the caller's transaction."""
        if not records:
            return 0
        rows = [(r.request_id, period_of(r.ts, self._partition), *row(r)) for r in records]
        await con.execute(_STAGE)
        await con.copy_records_to_table("ledger_stage", records=rows, columns=_NAMES)
        returned = await con.fetch(_INSERT)
        ids = {record["request_id"] for record in returned}
        inserted: dict[str, LedgerRecord] = {}
        for r in records:
            if r.request_id in ids:
                inserted.setdefault(r.request_id, r)
        sums = [(*key, *totals) for key, totals in deltas(inserted.values())]
        if sums:
            await con.execute(_UPSERT, *_transpose(sums, len(_ROLLUP_TYPES)))
        return len(inserted)

    async def usage(self, query: UsageQuery) -> UsagePage:
        sql = q.build(query, DIALECT)
        async with self._ready().acquire() as con:
            fetched = await con.fetch(sql.text, *sql.args)
        page, cursor = q.rows(sql, [tuple(r.values()) for r in fetched], query.limit)
        return UsagePage(page, cursor)

    async def read(self, text: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        """A read-only query of the dashboard's (core.dashboard.reads)."""
        async with self._ready().acquire() as con:
            return [tuple(r) for r in await con.fetch(text, *args)]

    async def drop_before(self, cutoff: float) -> int:
        """Drops every partition that ends at or before `cutoff`; returns how many."""
        last = period_of(cutoff, self._partition)
        async with self._ready().acquire() as con, con.transaction():
            await con.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
            await con.execute(_SET_HORIZON, period_start(last, self._partition))
            horizon = await con.fetchval(_HORIZON)
            names = await con.fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'ledger_records'"
            )
            periods = [int(n["relname"].removeprefix(_PARTITION_PREFIX)) for n in names]
            old = [p for p in periods if p < last]
            for p in old:
                await con.execute(f"DROP TABLE {_PARTITION_PREFIX}{p}")
        self._periods.difference_update(old)
        self._horizon = horizon  # once committed: a rolled-back drop moves nothing
        return len(old)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
