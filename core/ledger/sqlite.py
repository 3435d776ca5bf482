"""The embedded ledger store: one SQLite file (the default; `make run` uses it).

sqlite3 blocks, so every call runs on one dedicated thread that owns the connection (never
on the event loop). Partitioning: a `period` column (day or month number, core.ledger.periods)
with an index; retention deletes whole periods at once. One table per period would make a
query over a range a UNION of tables; a column keeps one table and the same SQL as PostgreSQL
(core.ledger.query), and a whole-period delete is one indexed range delete.

A batch takes a few statement steps whatever its size, and a read one
(core.ledger.sqlite_steps says why: the GIL).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from core.ledger import query as q
from core.ledger.codec import COLUMNS, MIGRATIONS, row, sql_default
from core.ledger.periods import period_of, period_start
from core.ledger.record import LedgerRecord
from core.ledger.rollup import ADDED_SUMS, KEY_COLUMNS, SUM_COLUMNS, deltas
from core.ledger.sqlite_steps import MultiRowInsert, all_rows, ids_present
from core.ledger.store import UsagePage, UsageQuery, note_expired, unexpired

T = TypeVar("T")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS ledger_records (
    request_id TEXT PRIMARY KEY, period INTEGER NOT NULL, {", ".join(COLUMNS)}
);
CREATE INDEX IF NOT EXISTS ledger_records_period ON ledger_records (period);
CREATE INDEX IF NOT EXISTS ledger_records_tenant_ts ON ledger_records (tenant, ts);
CREATE TABLE IF NOT EXISTS ledger_meta (name TEXT PRIMARY KEY, value REAL NOT NULL);
CREATE TABLE IF NOT EXISTS ledger_rollups (
    {", ".join(f"{c} {'INTEGER' if c == 'bucket' else 'TEXT'} NOT NULL" for c in KEY_COLUMNS)},
    {", ".join(f"{c} INTEGER NOT NULL" for c in SUM_COLUMNS)},
    PRIMARY KEY ({", ".join(KEY_COLUMNS)})
) WITHOUT ROWID;
"""
_NAMES = ("request_id", "period", *COLUMNS)


_INSERT = MultiRowInsert("ledger_records", _NAMES, "ON CONFLICT (request_id) DO NOTHING")
_STORED = (
    "SELECT json_group_array(request_id) FROM ledger_records "
    "WHERE request_id IN (SELECT value FROM json_each(?))"
)
_UPSERT = MultiRowInsert(
    "ledger_rollups",
    (*KEY_COLUMNS, *SUM_COLUMNS),
    f"ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET "
    + ", ".join(f"{c} = {c} + excluded.{c}" for c in SUM_COLUMNS),
)
_HORIZON = "SELECT value FROM ledger_meta WHERE name = 'horizon'"
_SET_HORIZON = (
    "INSERT INTO ledger_meta (name, value) VALUES ('horizon', ?) "
    "ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)"
)
DIALECT = q.Dialect(param=lambda i, kind: "?", floor_int=lambda e: f"CAST({e} AS INTEGER)")


def _migrate(db: sqlite3.Connection) -> None:
    """Columns added since a table was created (codec.MIGRATIONS, rollup.ADDED_SUMS), added
    in place."""
    have = {info[1] for info in db.execute("PRAGMA table_info(ledger_records)")}
    for name, kind, default in MIGRATIONS:
        if name not in have:
            sql_type = "INTEGER" if kind == "int" else "TEXT"
            db.execute(
                f"ALTER TABLE ledger_records ADD COLUMN {name} {sql_type} "
                f"DEFAULT {sql_default(default)}"
            )
    have = {info[1] for info in db.execute("PRAGMA table_info(ledger_rollups)")}
    for name in ADDED_SUMS:
        if name not in have:
            db.execute(f"ALTER TABLE ledger_rollups ADD COLUMN {name} INTEGER NOT NULL DEFAULT 0")


MIN_SQLITE = (3, 35, 0)  # json_each, json_group_array, MATERIALIZED


class SqliteStore:
    def __init__(self, path: Path, partition: str = "day") -> None:
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise RuntimeError(
                f"the embedded ledger needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer "
                f"(this Python's is {sqlite3.sqlite_version}): run a newer Python build or set "
                "ledger.url to a postgresql:// database"
            )
        self._path = path
        self._partition = partition
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-sqlite")
        self._db: sqlite3.Connection | None = None
        self.expired = 0

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            if self._db is None:
                raise RuntimeError("the ledger store is not open")
            return fn(self._db)

        return await asyncio.get_running_loop().run_in_executor(self._thread, run)

    async def open(self) -> None:
        def connect() -> None:
            if self._db is not None:
                return
            self._path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self._path, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            _migrate(db)
            self._db = db

        await asyncio.get_running_loop().run_in_executor(self._thread, connect)

    async def write(self, records: Sequence[LedgerRecord]) -> int:
        partition = self._partition

        def write(db: sqlite3.Connection) -> tuple[int, int]:
            db.execute("BEGIN IMMEDIATE")
            try:
                kept = unexpired(records, _horizon(db))
                fresh = _unstored(db, kept)
                if fresh:
                    rows = [(r.request_id, period_of(r.ts, partition), *row(r)) for r in fresh]
                    _INSERT.run(db, rows)
                    _UPSERT.run(db, [(*key, *totals) for key, totals in deltas(fresh)])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return len(fresh), len(records) - len(kept)

        new, expired = await self._call(write)
        self.expired += expired
        note_expired(expired)
        return new

    async def usage(self, query: UsageQuery) -> UsagePage:
        sql = q.build(query, DIALECT)

        page, cursor = q.rows(sql, await self.read(sql.text, sql.args), query.limit)
        return UsagePage(page, cursor)

    async def read(self, text: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        """A read-only query of the dashboard's (core.dashboard.reads), on the store's thread."""
        return await self._call(lambda db: all_rows(db, text, list(args)))

    async def drop_before(self, cutoff: float) -> int:
        """Deletes the periods that end at or before `cutoff`; returns how many there were."""
        # Every period before the cutoff's own ends at or before the cutoff.
        last = period_of(cutoff, self._partition)

        def drop(db: sqlite3.Connection) -> int:
            sql = "SELECT COUNT(DISTINCT period) FROM ledger_records WHERE period < ?"
            db.execute("BEGIN IMMEDIATE")
            try:
                (count,) = db.execute(sql, (last,)).fetchone()
                db.execute("DELETE FROM ledger_records WHERE period < ?", (last,))
                db.execute(_SET_HORIZON, (period_start(last, self._partition),))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return int(count)

        return await self._call(drop)

    async def close(self) -> None:
        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._thread, close)
        self._thread.shutdown(wait=False)


def _unstored(db: sqlite3.Connection, records: list[LedgerRecord]) -> list[LedgerRecord]:
    """The first record of each request id the table does not hold yet, in batch order: a
    replayed or repeated record is kept once and counted in the rollups once."""
    firsts: dict[str, LedgerRecord] = {}
    for r in records:
        firsts.setdefault(r.request_id, r)
    for request_id in ids_present(db, _STORED, list(firsts)) if firsts else ():
        firsts.pop(request_id, None)
    return list(firsts.values())


def _horizon(db: sqlite3.Connection) -> float | None:
    found = db.execute(_HORIZON).fetchone()
    return None if found is None else float(found[0])
