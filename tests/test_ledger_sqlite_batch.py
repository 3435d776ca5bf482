"""The embedded (SQLite) ledger writes a batch in a fixed handful of statements.

Why it matters: sqlite3 gives up the GIL around each statement step and must take it back;
on a loaded core the event loop holds the GIL and every take-back waits up to the switch
interval. With one statement per record the writer fell to a few hundred records a second
under load and its queue (the core's memory) grew for as long as the load lasted. These tests
count the statements a batch runs and check every value lands as it was given.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path

import pytest

from core.ledger.codec import COLUMNS, row
from core.ledger.periods import period_of
from core.ledger.record import LedgerRecord
from core.ledger.rollup import deltas
from core.ledger.sqlite import SqliteStore
from core.ledger.sqlite_steps import LARGEST, chunk_sizes
from core.ledger.store import UsageQuery
from tests.support.ledger_records import DAY, T0, expected, random_records, record


def _statements_per_write(path: Path, batches: list[list[LedgerRecord]]) -> list[list[str]]:
    """The statements each write ran (sqlite3's trace callback sees every one), by kind:
    the first three words (e.g. "INSERT INTO ledger_records")."""

    async def main() -> list[list[str]]:
        store = SqliteStore(path)
        await store.open()
        seen: list[str] = []
        await store._call(lambda db: db.set_trace_callback(seen.append))
        runs = []
        try:
            for batch in batches:
                seen.clear()
                await store.write(batch)
                runs.append([" ".join(sql.split()[:3]) for sql in seen])
        finally:
            await store.close()
        return runs

    return asyncio.run(main())


def test_a_batch_runs_a_few_statements_whatever_its_size(tmp_path: Path) -> None:
    many = random_records(2000, seed=11)
    replay = [*many[:700], record("late-1", T0 + 5), record("late-1", T0 + 5)]
    runs = _statements_per_write(tmp_path / "l.sqlite3", [[record("one", T0)], many, replay])
    inserts = [run.count("INSERT INTO ledger_records") for run in runs]
    # 1 row; 2000 rows as 64 x 31 + 16; the one new row of the replay
    assert inserts == [1, 32, 1], runs
    fresh = [[record("one", T0)], many, [record("late-1", T0 + 5)]]
    for run, inserted, new in zip(runs, inserts, fresh, strict=True):
        assert run[:2] == ["BEGIN IMMEDIATE", "SELECT value FROM"]  # the retained horizon
        assert run[2] == "SELECT json_group_array(request_id) FROM"  # the ids stored: one step
        assert run[-1] == "COMMIT"
        rollups = len(list(chunk_sizes(len(deltas(new)), LARGEST)))
        assert run.count("INSERT INTO ledger_rollups") == rollups
        assert len(run) == 4 + inserted + rollups


def test_a_batch_of_records_all_stored_already_skips_the_inserts(tmp_path: Path) -> None:
    batch = [record(f"r{i}", T0 + i) for i in range(20)]
    runs = _statements_per_write(tmp_path / "l.sqlite3", [batch, batch])
    assert runs[1] == [
        "BEGIN IMMEDIATE",
        "SELECT value FROM",
        "SELECT json_group_array(request_id) FROM",
        "COMMIT",
    ]


@pytest.mark.parametrize("count", [0, 1, 2, 3, 511, 512, 513, 1000, 2000, 4095])
def test_rows_go_in_power_of_two_chunks_of_at_most_the_largest(count: int) -> None:
    sizes = list(chunk_sizes(count, 512))
    assert sum(sizes) == count
    assert all(size & (size - 1) == 0 and 1 <= size <= 512 for size in sizes)
    assert len(sizes) <= count // 512 + 9
    assert sizes == sorted(sizes, reverse=True)


def _stored_rows(path: Path) -> dict[str, tuple[object, ...]]:
    names = ", ".join(("request_id", "period", *COLUMNS))
    with sqlite3.connect(path) as db:
        found = db.execute(f"SELECT {names} FROM ledger_records").fetchall()
    return {r[0]: tuple(r[1:]) for r in found}


def test_every_value_lands_with_its_type_and_exact_value(tmp_path: Path) -> None:
    plain = record("plain", T0 + 0.123456789012, tags=(("env", 'pr"od\\'), ("team", "Zürich ✓")))
    bare = dataclasses.replace(
        record("bare", T0 + 1 / 3, tenant="t-ünï", provider=None),
        ttft_ms=None,
        price_version=None,
        unpriced=True,
        latency_ms=12345.678901234567,
        trace_id="0af7651916cd43dd8448eb211c80319c",
    )
    records = [plain, bare, *random_records(300, seed=3)]
    path = tmp_path / "l.sqlite3"

    async def main() -> int:
        store = SqliteStore(path)
        await store.open()
        try:
            return await store.write(records)
        finally:
            await store.close()

    assert asyncio.run(main()) == len(records)
    stored = _stored_rows(path)
    for r in records:
        want = (period_of(r.ts, "day"), *row(r))
        got = stored[r.request_id]
        assert got == want, r.request_id
        # sqlite3 gives bools back as ints, as it did when they were bound one by one
        assert [type(v) for v in got] == [int if type(v) is bool else type(v) for v in want]


def test_rollups_of_one_big_batch_equal_the_raw_records_sums(tmp_path: Path) -> None:
    records = random_records(2000, seed=5)
    duplicated = records + records[:50]

    async def main() -> None:
        store = SqliteStore(tmp_path / "l.sqlite3")
        await store.open()
        try:
            assert await store.write(duplicated) == len(records)
            query = UsageQuery(T0, T0 + 3 * DAY, "acme", ("model", "day"))
            page = await store.usage(query)
            assert page.next_cursor is None
            got = {
                tuple(r.group[g] for g in query.group_by): [r.requests, r.input_tokens]
                for r in page.rows
            }
            want = {k: v[:2] for k, v in expected(records, query).items()}
            assert got == want
        finally:
            await store.close()

    asyncio.run(main())


def test_a_read_is_one_step_in_the_querys_order_with_exact_values(tmp_path: Path) -> None:
    records = random_records(3000, seed=9)
    records[0] = dataclasses.replace(records[0], ttft_ms=None, latency_ms=0.1 + 0.2)
    path = tmp_path / "l.sqlite3"
    text = (
        "SELECT request_id, ts, latency_ms, ttft_ms, unpriced, input, tags FROM ledger_records "
        "WHERE ts >= ? ORDER BY ts DESC LIMIT ?"
    )

    async def main() -> tuple[list[tuple[object, ...]], list[tuple[object, ...]], int]:
        store = SqliteStore(path)
        await store.open()
        try:
            await store.write(records)
            seen: list[str] = []
            await store._call(lambda db: db.set_trace_callback(seen.append))
            got = await store.read(text, [T0, 2500])
            empty = await store.read(text, [T0 + 99 * DAY, 10])
            return got, empty, len(seen)
        finally:
            await store.close()

    got, empty, statements = asyncio.run(main())
    with sqlite3.connect(path) as db:
        want = db.execute(text, (T0, 2500)).fetchall()
    assert len(want) == 2500 and got == want
    assert [[type(v) for v in r] for r in got] == [[type(v) for v in r] for r in want]
    assert empty == []
    assert statements == 4  # two reads, each: its width, then all its rows in one step


def test_an_sqlite_too_old_for_the_batch_statements_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
    with pytest.raises(RuntimeError, match=r"SQLite 3\.35\.0 or newer .*postgresql://"):
        SqliteStore(tmp_path / "l.sqlite3")
