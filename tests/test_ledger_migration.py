"""The ledger's added columns (codec.MIGRATIONS: a cache hit's saved tokens) reach a table
created before them, on both stores: opening the store adds them in place, old rows read 0,
new rows keep their values, and the writes still line up column by column."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg

from core.ledger.postgres import PostgresStore
from core.ledger.sqlite import SqliteStore
from core.ledger.store import LedgerStore
from tests.support.ledger_records import T0, record
from tests.support.postgres_server import PostgresServer

_DROP = "ALTER TABLE ledger_records DROP COLUMN saved_input, DROP COLUMN saved_output"
_SELECT = "SELECT request_id, saved_input, saved_output, output FROM ledger_records"


async def _write(store: LedgerStore, *records: Any) -> None:
    await store.open()
    try:
        await store.write(list(records))
    finally:
        await store.close()


def _records() -> tuple[Any, Any]:
    old = record("req_old", T0 + 10)
    hit = dataclasses.replace(record("req_hit", T0 + 20), saved_input=7, saved_output=12)
    return old, hit


def test_sqlite_table_gains_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    old, hit = _records()
    asyncio.run(_write(SqliteStore(path), old))
    with sqlite3.connect(path) as db:  # as a table created before the columns existed
        db.execute("ALTER TABLE ledger_records DROP COLUMN saved_input")
        db.execute("ALTER TABLE ledger_records DROP COLUMN saved_output")
    asyncio.run(_write(SqliteStore(path), hit))
    with sqlite3.connect(path) as db:
        rows = {r[0]: r[1:] for r in db.execute(_SELECT)}
    assert rows == {"req_old": (0, 0, 10), "req_hit": (7, 12, 10)}


def test_postgres_table_gains_the_columns(postgres: PostgresServer) -> None:
    url = postgres.database()
    old, hit = _records()

    async def main() -> dict[str, tuple[int, ...]]:
        await _write(PostgresStore(url), old)
        con = await asyncpg.connect(url)
        try:
            await con.execute(_DROP)
        finally:
            await con.close()
        await _write(PostgresStore(url), hit)
        con = await asyncpg.connect(url)
        try:
            return {r[0]: tuple(r[1:]) for r in await con.fetch(_SELECT)}
        finally:
            await con.close()

    assert asyncio.run(main()) == {"req_old": (0, 0, 10), "req_hit": (7, 12, 10)}
