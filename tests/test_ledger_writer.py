"""The ledger's writer against real stores: batches off the hot path, a bounded queue that
spills to disk while PostgreSQL is down, replay in order and exactly once when it is back,
shutdown that writes or spills everything, a torn spill file after a crash, and a replay older
than retention skipped (on both stores)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import asyncpg
import pytest

from core.ledger.postgres import PostgresStore
from core.ledger.record import LedgerRecord
from core.ledger.spill import SpillFile
from core.ledger.sqlite import SqliteStore
from core.ledger.store import LedgerStore, UsageQuery
from core.ledger.writer import Ledger, StoreUnavailable
from shared.config_ledger import LedgerConfig
from tests.support.ledger_records import DAY, T0, record
from tests.support.postgres_server import PostgresServer
from tests.support.prom import page_of

StoreFactory = Callable[[], LedgerStore]


@pytest.fixture(params=["sqlite", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """A new store object on one database per test, SQLite or the session's PostgreSQL."""
    if request.param == "sqlite":
        yield lambda: SqliteStore(tmp_path / "ledger.sqlite3")
        return
    url = request.getfixturevalue("postgres").database()
    yield lambda: PostgresStore(url)


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


def test_a_replay_older_than_retention_is_skipped_never_counted_twice(
    tmp_path: Path, make_store: StoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A record written long ago whose raw partition retention has dropped comes back (from
    the spill file, and from the queue): written again, the rollups would count it twice."""
    now = T0 + 20 * DAY + 3600
    settings = config(tmp_path, retention_s=10.0 * DAY)
    old = record("req_expired_1", T0 + 5 * DAY + 10)  # in a partition retention drops
    edge = record("req_edge_1", T0 + 10 * DAY + 5)  # before the cutoff, in a kept partition
    new = record("req_new_1", now - 10)

    async def first_life() -> None:
        store = make_store()
        await store.open()
        assert await store.write([old, edge]) == 2
        assert await store.drop_before(now - settings.retention_s) >= 1  # old's partition
        await store.close()

    asyncio.run(first_life())
    spill = SpillFile(tmp_path / "spill")
    spill.open()
    spill.append([old])  # a copy left in the spill file by a crash after its write
    spill.close()
    store = make_store()

    async def replay() -> Ledger:
        ledger = Ledger(store, settings)
        for r in (old, edge, new):
            ledger.append(r)
        await ledger.flush()
        await ledger.stop()
        return ledger

    with caplog.at_level(logging.WARNING, logger="interlock.ledger"):
        ledger = asyncio.run(replay())
    assert (store.expired, ledger.written, ledger.spill_pending) == (2, 1, 0)
    assert "interlock_ledger_expired_total 2.0" in page_of(ledger.metric_families())
    assert "older than its retained horizon" in caplog.text
    assert "req_" not in caplog.text  # how many, never which

    async def requests_per_day() -> list[int]:
        store = make_store()
        await store.open()
        try:
            counts = []
            for day in (T0 + 5 * DAY, T0 + 10 * DAY, now // DAY * DAY):
                rows = (await store.usage(UsageQuery(day, day + DAY, "acme"))).rows
                counts.append(sum(row.requests for row in rows))
            return counts
        finally:
            await store.close()

    assert asyncio.run(requests_per_day()) == [1, 1, 1]  # each once in the rollups


class StoppingStore(SqliteStore):
    """The real SQLite store that asks for the ledger's shutdown as its first write completes:
    the moment at which Python 3.11's `asyncio.wait_for` lost the cancel of the writer job,
    and the core's shutdown waited for it without end."""

    ledger: Ledger
    stopping: asyncio.Task[None] | None = None
    asked: asyncio.Event

    async def write(self, records: Sequence[LedgerRecord]) -> int:
        written = await super().write(records)
        if self.stopping is None:
            self.stopping = asyncio.get_running_loop().create_task(self.ledger.stop())
            self.asked.set()
        return written


def test_a_shutdown_that_comes_as_a_write_completes_ends(tmp_path: Path) -> None:
    store = StoppingStore(tmp_path / "l.sqlite3")
    ledger = store.ledger = Ledger(store, config(tmp_path, flush_interval_s=0.01))

    async def main() -> None:
        store.asked = asyncio.Event()
        ledger.start()
        ledger.append(record("r0", T0))
        await store.asked.wait()
        assert store.stopping is not None
        await asyncio.wait_for(store.stopping, 5)  # raises TimeoutError if the stop hangs

    asyncio.run(main())
    assert ledger.written == 1 and ledger.queued == 0
