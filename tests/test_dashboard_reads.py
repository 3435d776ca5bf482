"""The dashboard's raw-record reads (core.dashboard.reads) on both ledger stores (SQLite and a
real PostgreSQL) and both partitions (day, month): the request log and the health sample are
the newest records of the range, walked partition by partition, tenant-scoped, filtered, and
the same on both stores."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.dashboard import reads
from core.dashboard.reads import RawReads, Scope
from core.dashboard.routes import raw_reads
from core.ledger.postgres import PostgresStore
from core.ledger.sqlite import SqliteStore
from core.ledger.store import LedgerStore
from tests.support.dashboard_stack import seeded_records
from tests.support.postgres_server import PostgresServer

NOW = 1_796_000_000.0  # 2026-11-30: the seeded month spans a month boundary
RECORDS = seeded_records(NOW, n=400, seed=3)


@pytest.fixture(params=["sqlite-day", "sqlite-month", "postgres-day", "postgres-month"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[LedgerStore, str]]:
    kind, partition = request.param.split("-")
    if kind == "sqlite":
        yield SqliteStore(tmp_path / "ledger.sqlite3", partition), partition
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    yield PostgresStore(server.database(), partition), partition


def run(store: LedgerStore, partition: str, body: Any) -> Any:
    async def main() -> Any:
        await store.open()
        try:
            await store.write(RECORDS)
            found = raw_reads(store, partition)
            assert isinstance(found, RawReads)
            return await body(found)
        finally:
            await store.close()

    return asyncio.run(main())


def newest(tenant: str | None, start: float, end: float, **match: str) -> list[Any]:
    kept = [
        r
        for r in RECORDS
        if (tenant is None or r.tenant == tenant)
        and start <= r.ts < end
        and all(getattr(r, k) == v for k, v in match.items())
    ]
    return sorted(kept, key=lambda r: -r.ts)


def test_the_log_is_the_newest_records_across_partitions(store: tuple[LedgerStore, str]) -> None:
    start, end = NOW - 20 * 86400, NOW - 3 * 86400

    async def body(r: RawReads) -> list[list[dict[str, Any]]]:
        return [
            await r.log(Scope(start, end, "acme", {}), 200),
            await r.log(Scope(start, end, None, {"provider": "openai"}), 30),
            await r.log(Scope(start, end, "beta", {"outcome": "timeout"}), 200),
        ]

    acme, openai, timeouts = run(*store, body)
    assert [x["request_id"] for x in acme] == [r.request_id for r in newest("acme", start, end)]
    expected = newest(None, start, end, provider="openai")[:30]
    assert [x["request_id"] for x in openai] == [r.request_id for r in expected]
    beta = newest("beta", start, end, outcome="timeout")
    assert [x["request_id"] for x in timeouts] == [r.request_id for r in beta] != []
    assert acme[0]["tags"] and isinstance(acme[0]["tags"], dict)


def test_health_reads_the_latest_sample_only(
    store: tuple[LedgerStore, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reads, "HEALTH_SAMPLE", 50)
    start, end = NOW - 40 * 86400, NOW

    async def body(r: RawReads) -> dict[str, Any]:
        return await r.health(Scope(start, end, None, {}))

    health = run(*store, body)
    sample = newest(None, start, end)[:50]
    assert health["sample"] == 50 and health["since"] == pytest.approx(sample[-1].ts)
    outcomes: dict[str, int] = {}
    for r in sample:
        outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
    assert health["outcomes"] == outcomes
