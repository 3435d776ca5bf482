"""The ledger's writer against real stores: batches off the hot path, a bounded queue that
spills to disk while PostgreSQL is down, replay in order and exactly once when it is back,
shutdown that writes or spills everything, and a torn spill file after a crash."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import pytest

from core.ledger.postgres import PostgresStore
from core.ledger.record import LedgerRecord
from core.ledger.spill import SpillFile
from core.ledger.sqlite import SqliteStore
from core.ledger.store import UsageQuery
from core.ledger.writer import Ledger, StoreUnavailable
from shared.config_ledger import LedgerConfig
from tests.support.ledger_records import DAY, T0, record
from tests.support.postgres_server import PostgresServer


def config(tmp_path: Path, **settings: object) -> LedgerConfig:
    base = LedgerConfig(spill_dir=str(tmp_path / "spill"), write_timeout_s=3.0)
    return dataclasses.replace(base, **settings)  # type: ignore[arg-type]


class CountingStore(SqliteStore):
    """The real SQLite store, remembering the size of every batch it was given."""

    batches: list[int]

    async def write(self, records: Sequence[LedgerRecord]) -> int:
        self.batches.append(len(records))
        return await super().write(records)


async def pg_ids(url: str) -> list[str]:
    con = await asyncpg.connect(url)
    try:
        rows = await con.fetch("SELECT request_id FROM ledger_records ORDER BY ts")
        return [r["request_id"] for r in rows]
    finally:
        await con.close()


def test_appends_are_written_in_batches_by_the_background_job(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "l.sqlite3")
    store.batches = []
    ledger = Ledger(store, config(tmp_path, batch_size=7, flush_interval_s=0.02))
    records = [record(f"r{i}", T0 + i) for i in range(50)]

    async def main() -> None:
        ledger.start()
        for r in records:
            ledger.append(r)  # no await, no I/O
        assert ledger.queued == 50
        for _ in range(200):
            if ledger.written == 50:
                break
            await asyncio.sleep(0.02)
        await ledger.stop()

    asyncio.run(main())
    assert ledger.written == 50 and max(store.batches) == 7

    async def check() -> int:
        reader = SqliteStore(tmp_path / "l.sqlite3")
        await reader.open()
        (row,) = (await reader.usage(UsageQuery(T0, T0 + DAY, "acme"))).rows
        await reader.close()
        return row.requests

    assert asyncio.run(check()) == 50


def test_while_postgres_is_down_records_spill_and_land_once_when_it_returns(
    tmp_path: Path,
) -> None:
    server = PostgresServer().start()
    try:
        url = server.database()
        server.stop()
        settings = config(tmp_path, batch_size=10, queue_max=20, write_timeout_s=2.0)
        records = [record(f"s{i:03d}", T0 + i) for i in range(100)]

        async def while_down() -> Ledger:
            ledger = Ledger(PostgresStore(url), settings)
            for r in records[:60]:
                ledger.append(r)
            with pytest.raises(StoreUnavailable):
                await ledger.flush()
            assert (ledger.queued, ledger.spill_pending) == (20, 40)  # the oldest on disk
            for r in records[60:]:
                ledger.append(r)
            await ledger.stop()  # shutdown with the store down: everything to disk
            return ledger

        down = asyncio.run(while_down())
        assert down.spill_pending == 100 and down.queued == 0
        server.start()

        async def after() -> Ledger:
            ledger = Ledger(PostgresStore(url), settings)
            await ledger.flush()  # the previous process's spill file, replayed
            await ledger.stop()
            return ledger

        assert asyncio.run(after()).written == 100
        ids = asyncio.run(pg_ids(url))
        assert sorted(ids) == [r.request_id for r in records]  # each exactly once
        assert asyncio.run(after()).written == 0  # nothing left to replay
        assert (tmp_path / "spill" / "ledger.spill").stat().st_size == 0
    finally:
        server.remove()


def test_a_torn_spill_file_is_repaired_and_replayed(tmp_path: Path) -> None:
    spill = SpillFile(tmp_path / "spill")
    spill.open()
    spill.append([record("ok1", T0 + 1), record("ok2", T0 + 2)])
    spill.close()
    with (tmp_path / "spill" / "ledger.spill").open("ab") as handle:
        handle.write(b'{"request_id": "torn", "ts"')  # a crash mid-append

    async def main() -> Ledger:
        ledger = Ledger(SqliteStore(tmp_path / "l.sqlite3"), config(tmp_path))
        await ledger.flush()
        await ledger.stop()
        return ledger

    assert asyncio.run(main()).written == 2


def test_two_processes_never_share_a_spill_file(tmp_path: Path) -> None:
    first, second = SpillFile(tmp_path), SpillFile(tmp_path)
    first.open()
    second.open()
    assert first.path != second.path
    first.close()
    second.close()
