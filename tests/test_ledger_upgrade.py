"""A ledger written by the previous version (tests/support/ledger_previous.sql: a real SQLite
file of it, dumped; the same rows under its PostgreSQL schema) opens with this version and
keeps working, on both stores: opening adds the media-unit columns to the raw table and the
rollups in place (old rows count 0 images, 0 s, 0 characters), old records keep their totals,
a replayed old request id is still a duplicate, new media records are counted in the raw rows
and the rollups alike, a previous-version replica's writes (a rolling upgrade: its INSERTs
name only the columns it knows) still land, and opening twice migrates nothing twice."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from core.ledger.postgres import PostgresStore
from core.ledger.sqlite import SqliteStore
from core.ledger.store import LedgerStore, UsageQuery, UsageRow
from tests.support.ledger_records import DAY, T0, record
from tests.support.postgres_server import PostgresServer

DUMP = Path(__file__).parent / "support" / "ledger_previous.sql"
_OLD_RECORD_COLUMNS = (
    "request_id, period, ts, tenant, tags, api, requested_model, served_model, provider, "
    "key_id, input, cache_read, cache_write_5m, cache_write_1h, output, reasoning, estimated, "
    "cost_micros, price_version, unpriced, outcome, attempts, latency_ms, ttft_ms, "
    "saved_input, saved_output, trace_id"
)
_OLD_ROLLUP_COLUMNS = (
    "grain, bucket, tenant, tag_key, tag_value, model, provider, served, "
    "requests, input_tokens, cache_read, cache_write, output_tokens, cost"
)
# The previous version's PostgreSQL schema, as its core.ledger.postgres created it.
_OLD_PG_SCHEMA = f"""
CREATE TABLE ledger_records (
    request_id text NOT NULL, period int4 NOT NULL, ts float8 NOT NULL, tenant text NOT NULL,
    tags text NOT NULL, api text NOT NULL, requested_model text NOT NULL, served_model text,
    provider text, key_id text, input int8, cache_read int8, cache_write_5m int8,
    cache_write_1h int8, output int8, reasoning int8, estimated bool, cost_micros int8,
    price_version text, unpriced bool, outcome text NOT NULL, attempts int4 NOT NULL,
    latency_ms float8, ttft_ms float8, saved_input int8, saved_output int8, trace_id text,
    PRIMARY KEY (request_id, period)
) PARTITION BY RANGE (period);
CREATE INDEX ledger_records_tenant_ts ON ledger_records (tenant, ts);
CREATE TABLE ledger_meta (name text PRIMARY KEY, value float8 NOT NULL);
CREATE TABLE ledger_rollups (
    grain text NOT NULL, bucket int8 NOT NULL, tenant text NOT NULL, tag_key text NOT NULL,
    tag_value text NOT NULL, model text NOT NULL, provider text NOT NULL, served text NOT NULL,
    requests int8 NOT NULL, input_tokens int8 NOT NULL, cache_read int8 NOT NULL,
    cache_write int8 NOT NULL, output_tokens int8 NOT NULL, cost int8 NOT NULL,
    PRIMARY KEY ({_OLD_ROLLUP_COLUMNS.partition(", requests")[0]})
);
"""
_BOOLS = (16, 19)  # estimated, unpriced: SQLite keeps 0/1


def _previous_rows() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    db = sqlite3.connect(":memory:")
    db.executescript(DUMP.read_text())
    records = db.execute(f"SELECT {_OLD_RECORD_COLUMNS} FROM ledger_records").fetchall()
    rollups = db.execute(f"SELECT {_OLD_ROLLUP_COLUMNS} FROM ledger_rollups").fetchall()
    return records, rollups


def _previous_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.executescript(DUMP.read_text())


async def _previous_postgres(url: str) -> None:
    records, rollups = _previous_rows()
    con = await asyncpg.connect(url)
    try:
        await con.execute(_OLD_PG_SCHEMA)
        for period in sorted({r[1] for r in records}):
            await con.execute(
                f"CREATE TABLE ledger_records_p{period} PARTITION OF ledger_records "
                f"FOR VALUES FROM ({period}) TO ({period + 1})"
            )
        for r in records:
            values = [bool(v) if i in _BOOLS else v for i, v in enumerate(r)]
            values[2] = float(values[2])
            marks = ", ".join(f"${i}" for i in range(1, len(values) + 1))
            await con.execute(
                f"INSERT INTO ledger_records ({_OLD_RECORD_COLUMNS}) VALUES ({marks})", *values
            )
        marks = ", ".join(f"${i}" for i in range(1, len(rollups[0]) + 1))
        await con.executemany(
            f"INSERT INTO ledger_rollups ({_OLD_ROLLUP_COLUMNS}) VALUES ({marks})", rollups
        )
    finally:
        await con.close()


@pytest.fixture(params=["sqlite", "postgres"])
def previous(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(store kind, where): a ledger the previous version wrote (a file, or a database URL)."""
    if request.param == "sqlite":
        path = tmp_path / "ledger.sqlite3"
        _previous_sqlite(path)
        yield "sqlite", str(path)
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    url = server.database()
    asyncio.run(_previous_postgres(url))
    yield "postgres", url


def _factory(kind: str, where: str) -> Callable[[], LedgerStore]:
    if kind == "sqlite":
        return lambda: SqliteStore(Path(where))
    return lambda: PostgresStore(where)


def _run(make: Callable[[], LedgerStore], body: Callable[[LedgerStore], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        store = make()
        await store.open()
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


def _sums(row: UsageRow) -> tuple[int, ...]:
    tokens = (row.requests, row.input_tokens, row.output_tokens, row.cost_micros)
    return (*tokens, row.images, row.audio_ms, row.characters)


async def _by_model(store: LedgerStore, start: float, end: float) -> dict[str, tuple[int, ...]]:
    page = await store.usage(UsageQuery(start, end, "acme", ("model",)))
    return {row.group["model"]: _sums(row) for row in page.rows}


OLD = {
    "dall-e-3": (1, 0, 0, 80000, 0, 0, 0),
    "gpt-x": (1, 100, 40, 500, 0, 0, 0),
    "whisper-1": (1, 0, 0, 400, 0, 0, 0),
}


def _media(request_id: str, ts: float, model: str, media: tuple[int, int, int]) -> Any:
    return record(request_id, ts, model=model, tokens=0, cost=1000, media=media)


NEW = [
    _media("new-img", T0 + 95, "dall-e-3", (3, 0, 0)),  # the old record's minute and hour
    _media("new-audio", T0 + 7300, "whisper-1", (0, 95_500, 0)),
    _media("new-tts", T0 + 7400, "tts-1", (0, 0, 1234)),
]
AFTER = {
    "dall-e-3": (2, 0, 0, 81000, 3, 0, 0),
    "gpt-x": (1, 100, 40, 500, 0, 0, 0),
    "whisper-1": (2, 0, 0, 1400, 0, 95_500, 0),
    "tts-1": (1, 0, 0, 1000, 0, 0, 1234),
}


def test_a_previous_ledger_opens_and_keeps_working(previous: tuple[str, str]) -> None:
    kind, where = previous
    make = _factory(kind, where)

    async def body(store: LedgerStore) -> None:
        assert await _by_model(store, T0, T0 + DAY) == OLD  # day rollups
        assert await _by_model(store, T0 + 1.5, T0 + DAY) == OLD  # raw records
        assert await store.write([_media("prev-1", T0 + 90, "dall-e-3", (2, 0, 0))]) == 0
        assert await store.write(NEW) == 3
        for start, end in ((T0, T0 + DAY), (T0 + 1.5, T0 + DAY), (T0, T0 + 3 * 3600)):
            assert await _by_model(store, start, end) == AFTER, (start, end)
        by_minute = await store.usage(UsageQuery(T0 + 60, T0 + 120, "acme", ("minute",)))
        assert [_sums(r) for r in by_minute.rows] == [(2, 0, 0, 81000, 3, 0, 0)]

    _run(_factory(kind, where), body)
    _run(make, _reopened)  # a second open migrates nothing twice
    _previous_replica_writes(kind, where)


async def _reopened(store: LedgerStore) -> None:
    assert await _by_model(store, T0, T0 + DAY) == AFTER


def _previous_replica_writes(kind: str, where: str) -> None:
    """A replica still on the previous version writes a record and its rollups with its own
    statements (no media columns): they land, and the new columns read 0 for them."""
    row = (
        "old-replica", 20601, float(T0 + 100), "acme", "{}", "openai", "gpt-x", "gpt-x",
        "openai", None, 5, 0, 0, 0, 5, 0, False, 10, None, False, "ok", 1, 1.0, None, 0, 0, None,
    )  # fmt: skip
    rollup = ("day", T0, "acme", "", "", "gpt-x", "openai", "gpt-x", 1, 5, 0, 0, 5, 10)
    keys = _OLD_ROLLUP_COLUMNS.partition(", requests")[0]
    sums = _OLD_ROLLUP_COLUMNS.partition("served, ")[2].split(", ")
    update = ", ".join(f"{c} = ledger_rollups.{c} + excluded.{c}" for c in sums)
    if kind == "sqlite":
        with sqlite3.connect(where) as db:
            marks = ", ".join("?" * len(row))
            db.execute(f"INSERT INTO ledger_records ({_OLD_RECORD_COLUMNS}) VALUES ({marks})", row)
            marks = ", ".join("?" * len(rollup))
            db.execute(
                f"INSERT INTO ledger_rollups ({_OLD_ROLLUP_COLUMNS}) VALUES ({marks}) "
                f"ON CONFLICT ({keys}) DO UPDATE SET {update}",
                rollup,
            )
    else:

        async def write() -> None:
            con = await asyncpg.connect(where)
            try:
                marks = ", ".join(f"${i}" for i in range(1, len(row) + 1))
                await con.execute(
                    f"INSERT INTO ledger_records ({_OLD_RECORD_COLUMNS}) VALUES ({marks})", *row
                )
                marks = ", ".join(f"${i}" for i in range(1, len(rollup) + 1))
                await con.execute(
                    f"INSERT INTO ledger_rollups ({_OLD_ROLLUP_COLUMNS}) VALUES ({marks}) "
                    f"ON CONFLICT ({keys}) DO UPDATE SET {update}",
                    *rollup,
                )
            finally:
                await con.close()

        asyncio.run(write())

    async def body(store: LedgerStore) -> None:
        expected = {**AFTER, "gpt-x": (2, 105, 45, 510, 0, 0, 0)}
        assert await _by_model(store, T0, T0 + DAY) == expected
        assert await _by_model(store, T0 + 1.5, T0 + DAY) == expected

    _run(_factory(kind, where), body)
