"""The ledger's trace_id column: written by both stores, added in place (ALTER TABLE ... ADD
COLUMN) to a table created before it (old rows read NULL), and carried by the spill file (a
line written before it reads None)."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from core.ledger import codec
from core.ledger.postgres import PostgresStore
from core.ledger.sqlite import SqliteStore
from core.ledger.store import LedgerStore
from tests.support.ledger_records import T0, record
from tests.support.postgres_server import PostgresServer

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
_SELECT = "SELECT request_id, trace_id, output FROM ledger_records"


async def _write(store: LedgerStore, *records: Any) -> None:
    await store.open()
    try:
        await store.write(list(records))
    finally:
        await store.close()


def _records() -> tuple[Any, Any]:
    old = record("req_old", T0 + 10)
    traced = dataclasses.replace(record("req_new", T0 + 20), trace_id=TRACE_ID)
    return old, traced


def test_sqlite_table_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    old, traced = _records()
    asyncio.run(_write(SqliteStore(path), old))
    with sqlite3.connect(path) as db:  # as a table created before the column existed
        db.execute("ALTER TABLE ledger_records DROP COLUMN trace_id")
    asyncio.run(_write(SqliteStore(path), traced))
    with sqlite3.connect(path) as db:
        rows = {r[0]: r[1:] for r in db.execute(_SELECT)}
        kind = {r[1]: r[2] for r in db.execute("PRAGMA table_info(ledger_records)")}
    assert rows == {"req_old": (None, 10), "req_new": (TRACE_ID, 10)}
    assert kind["trace_id"] == "TEXT"


def test_postgres_table_gains_the_column(postgres: PostgresServer) -> None:
    url = postgres.database()
    old, traced = _records()

    async def main() -> dict[str, tuple[Any, ...]]:
        await _write(PostgresStore(url), old)
        con = await asyncpg.connect(url)
        try:
            await con.execute("ALTER TABLE ledger_records DROP COLUMN trace_id")
        finally:
            await con.close()
        await _write(PostgresStore(url), traced)
        con = await asyncpg.connect(url)
        try:
            return {r[0]: tuple(r[1:]) for r in await con.fetch(_SELECT)}
        finally:
            await con.close()

    assert asyncio.run(main()) == {"req_old": (None, 10), "req_new": (TRACE_ID, 10)}


def test_spill_lines_keep_it() -> None:
    _, traced = _records()
    assert codec.loads(codec.dumps(traced)) == traced
    line = orjson.loads(codec.dumps(traced))
    del line["trace_id"]  # a line spilled before the column existed
    assert codec.loads(orjson.dumps(line)).trace_id is None
