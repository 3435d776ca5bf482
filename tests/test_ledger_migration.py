"""The ledger's added columns (codec.MIGRATIONS: a cache hit's saved tokens, the trace id, the
media units) reach a table created before them, on both stores: opening the store adds them
in place, old rows read their old value (0, or NULL for trace_id), new rows keep theirs, and
the writes still line up column by column. Spill lines written before a column existed read
back the same. (A whole ledger of the previous version: test_ledger_upgrade.py.)"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from core.ledger import codec
from core.ledger.postgres import PostgresStore
from core.ledger.record import LedgerRecord
from core.ledger.sqlite import SqliteStore
from core.ledger.store import LedgerStore
from tests.support.ledger_records import T0, record
from tests.support.postgres_server import PostgresServer

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
OLD = record("req_old", T0 + 10)
# (the columns a table created before them lacks, a record using them, what the rows read)
CASES = {
    "saved": (
        ("saved_input", "saved_output"),
        dataclasses.replace(record("req_new", T0 + 20), saved_input=7, saved_output=12),
        {"req_old": (0, 0, 10), "req_new": (7, 12, 10)},
    ),
    "trace_id": (
        ("trace_id",),
        dataclasses.replace(record("req_new", T0 + 20), trace_id=TRACE_ID),
        {"req_old": (None, 10), "req_new": (TRACE_ID, 10)},
    ),
    "media": (
        ("images", "audio_ms", "characters"),
        record("req_new", T0 + 20, media=(2, 4500, 321)),
        {"req_old": (0, 0, 0, 10), "req_new": (2, 4500, 321, 10)},
    ),
}


async def _write(store: LedgerStore, *records: Any) -> None:
    await store.open()
    try:
        await store.write(list(records))
    finally:
        await store.close()


def _select(columns: tuple[str, ...]) -> str:
    return f"SELECT request_id, {', '.join(columns)}, output FROM ledger_records"


@pytest.mark.parametrize("case", CASES)
def test_sqlite_table_gains_the_columns(tmp_path: Path, case: str) -> None:
    columns, new, expected = CASES[case]
    path = tmp_path / "ledger.sqlite3"
    asyncio.run(_write(SqliteStore(path), OLD))
    with sqlite3.connect(path) as db:  # as a table created before the columns existed
        for column in columns:
            db.execute(f"ALTER TABLE ledger_records DROP COLUMN {column}")
    asyncio.run(_write(SqliteStore(path), new))
    with sqlite3.connect(path) as db:
        rows = {r[0]: r[1:] for r in db.execute(_select(columns))}
        types = {r[1]: r[2] for r in db.execute("PRAGMA table_info(ledger_records)")}
    assert rows == expected
    assert {types[c] for c in columns} == {"TEXT" if case == "trace_id" else "INTEGER"}


@pytest.mark.parametrize("case", CASES)
def test_postgres_table_gains_the_columns(postgres: PostgresServer, case: str) -> None:
    columns, new, expected = CASES[case]
    url = postgres.database()
    drop = "ALTER TABLE ledger_records " + ", ".join(f"DROP COLUMN {c}" for c in columns)

    async def main() -> dict[str, tuple[Any, ...]]:
        await _write(PostgresStore(url), OLD)
        con = await asyncpg.connect(url)
        try:
            await con.execute(drop)
        finally:
            await con.close()
        await _write(PostgresStore(url), new)
        con = await asyncpg.connect(url)
        try:
            return {r[0]: tuple(r[1:]) for r in await con.fetch(_select(columns))}
        finally:
            await con.close()

    assert asyncio.run(main()) == expected


@pytest.mark.parametrize("case", CASES)
def test_spill_lines_written_before_the_columns(case: str) -> None:
    columns, new, _ = CASES[case]
    assert codec.loads(codec.dumps(new)) == new
    line = orjson.loads(codec.dumps(new))
    for column in columns:
        del line[column]
    old_values = {name: old for name, _, old in codec.MIGRATIONS}
    read: LedgerRecord = codec.loads(orjson.dumps(line))
    values = [getattr(read.usage if hasattr(read.usage, c) else read, c) for c in columns]
    assert values == [old_values[c] for c in columns]
