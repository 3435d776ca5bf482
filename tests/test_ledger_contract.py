"""The ledger store contract, the same tests on both stores: SQLite (embedded) and a real
PostgreSQL (tests/support/postgres_server.py): idempotence, rollup totals equal the raw
records' sums for any range and grouping, keyset pagination, tenant scoping, retention, tags.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.ledger.periods import period_of, period_start
from core.ledger.postgres import PostgresStore
from core.ledger.sqlite import SqliteStore
from core.ledger.store import LedgerStore, UsageQuery
from tests.support.ledger_records import DAY, T0, expected, random_records, record
from tests.support.postgres_server import PostgresServer

StoreFactory = Callable[[], LedgerStore]


@pytest.fixture(params=["sqlite", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    if request.param == "sqlite":
        yield lambda: SqliteStore(tmp_path / "ledger.sqlite3")
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    url = server.database()
    yield lambda: PostgresStore(url)


def run(make_store: StoreFactory, body: Callable[[LedgerStore], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        store = make_store()
        await store.open()
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


async def all_pages(store: LedgerStore, q: UsageQuery) -> dict[tuple[str, ...], list[int]]:
    """Every row of the query, page by page, checking no group comes twice."""
    out: dict[tuple[str, ...], list[int]] = {}
    cursor = None
    for _ in range(10_000):
        page = await store.usage(dataclasses.replace(q, cursor=cursor))
        for row in page.rows:
            group = tuple(row.group[g] for g in q.group_by)
            assert group not in out, "a group came twice across pages"
            out[group] = [
                row.requests,
                row.input_tokens,
                row.cache_read_tokens,
                row.cache_write_tokens,
                row.output_tokens,
                row.cost_micros,
                row.images,
                row.audio_ms,
                row.characters,
            ]
        cursor = page.next_cursor
        if cursor is None:
            return out
    raise AssertionError("pagination never ended")


def test_writes_are_idempotent_on_request_id(make_store: StoreFactory) -> None:
    first = [record(f"r{i}", T0 + i) for i in range(10)]
    again = first + [record(f"n{i}", T0 + 100 + i) for i in range(5)]
    twice_in_one = [record("d1", T0 + 200), record("d1", T0 + 200)]

    async def body(store: LedgerStore) -> None:
        assert await store.write(first) == 10
        assert await store.write(again) == 5
        assert await store.write(first) == 0
        assert await store.write(twice_in_one) == 1
        whole_day = UsageQuery(T0, T0 + DAY, "acme")
        raw_range = UsageQuery(T0 + 0.5, T0 + DAY, "acme")
        for q in (whole_day, raw_range):
            assert await all_pages(store, q) == expected([*again, twice_in_one[0]], q)

    run(make_store, body)


QUERIES = [
    UsageQuery(T0, T0 + 3 * DAY, "acme"),
    UsageQuery(T0, T0 + 3 * DAY, "acme", ("model",)),
    UsageQuery(T0, T0 + 3 * DAY, "acme", ("day", "provider")),
    UsageQuery(T0 + DAY, T0 + 2 * DAY, "globex", ("hour",)),
    UsageQuery(T0 + 3600, T0 + 5 * 3600, "acme", ("served_model",)),
    UsageQuery(T0 + 60, T0 + 2 * DAY + 120, "acme", ("minute",), limit=50),
    UsageQuery(T0 + 17.5, T0 + DAY + 3.25, "acme", ("model", "provider")),  # raw records
    UsageQuery(T0 + 17.5, T0 + 2 * DAY, None, ("tenant", "hour")),  # raw, every tenant
    UsageQuery(T0, T0 + 3 * DAY, "acme", ("tag:project",)),
    UsageQuery(T0, T0 + 2 * DAY, "acme", ("day",), {"tag:env": "prod"}),
    UsageQuery(T0, T0 + 3 * DAY, "acme", ("tag:project", "model"), {"tag:project": "ads"}),
    UsageQuery(T0, T0 + 3 * DAY, "acme", ("model",), {"provider": ""}),
    UsageQuery(T0 + 3600, T0 + DAY, None, ("tenant", "model"), {"model": "gpt-x"}),
]


def test_usage_equals_the_sum_of_raw_records_for_any_range_and_grouping(
    make_store: StoreFactory,
) -> None:
    records = random_records(600)

    async def body(store: LedgerStore) -> None:
        for i in range(0, len(records), 97):  # several batches, as the writer sends them
            await store.write(records[i : i + 97])
        await store.write(records[:50])  # a replay: counted once
        for q in QUERIES:
            assert await all_pages(store, q) == expected(records, q), q

    run(make_store, body)


def test_pagination_is_keyset_and_the_cursor_is_bound_to_its_query(
    make_store: StoreFactory,
) -> None:
    records = random_records(300, seed=3)
    q = UsageQuery(T0, T0 + 3 * DAY, "acme", ("hour", "model"), limit=7)

    async def body(store: LedgerStore) -> None:
        await store.write(records)
        first = await store.usage(q)
        assert len(first.rows) == 7 and first.next_cursor is not None
        assert await all_pages(store, q) == expected(records, q)
        # A page written after the cursor was taken still continues after it.
        other = dataclasses.replace(q, group_by=("model", "hour"), cursor=first.next_cursor)
        for bad in (other, dataclasses.replace(q, cursor="not-a-cursor!")):
            with pytest.raises(ValueError, match="cursor"):
                await store.usage(bad)

    run(make_store, body)


def test_a_tenant_never_sees_another_tenants_rows(make_store: StoreFactory) -> None:
    records = [record(f"a{i}", T0 + 1 + i * 60, "acme", (("p", "x"),)) for i in range(20)]
    records += [record(f"g{i}", T0 + 1 + i * 60, tenant="globex") for i in range(5)]

    async def body(store: LedgerStore) -> None:
        await store.write(records)
        day = (T0, T0 + DAY)
        attempts = [
            UsageQuery(*day, "globex", filters={"tenant": "acme"}),
            UsageQuery(*day, "globex", ("tenant",)),
            UsageQuery(*day, "globex", ("tag:p",)),
            UsageQuery(T0 + 0.5, T0 + DAY, "globex", ("tenant", "model")),
            UsageQuery(*day, "globex", ("minute",), limit=1),
        ]
        for q in attempts:
            for group in await all_pages(store, q):
                assert "acme" not in group
            total = sum(v[0] for v in (await all_pages(store, q)).values())
            assert total in (0, 5), q
        # acme's cursor handed to globex's query: still only globex's rows.
        acme_page = await store.usage(UsageQuery(*day, "acme", ("minute",), limit=1))
        stolen = UsageQuery(*day, "globex", ("minute",), cursor=acme_page.next_cursor)
        assert sum(r.requests for r in (await store.usage(stolen)).rows) == 4

    run(make_store, body)


def test_retention_drops_whole_partitions(make_store: StoreFactory) -> None:
    records = [record(f"d{day}-{i}", T0 + day * DAY + i) for day in range(4) for i in range(3)]

    async def body(store: LedgerStore) -> None:
        await store.write(records)
        assert await store.drop_before(T0 + 2 * DAY + 5) == 2  # days 0 and 1, whole
        raw = UsageQuery(T0 + 0.5, T0 + 4 * DAY, "acme", ("day",))
        assert sorted(await all_pages(store, raw)) == [(str(T0 + 2 * DAY),), (str(T0 + 3 * DAY),)]
        assert await store.drop_before(T0 + 2 * DAY + 5) == 0
        # The rollups keep the long-term totals.
        (row,) = (await store.usage(UsageQuery(T0, T0 + 4 * DAY, "acme"))).rows
        assert row.requests == 12

    run(make_store, body)


def test_no_store_writes_a_record_of_a_dropped_partition_again(make_store: StoreFactory) -> None:
    """Idempotence lives in the raw rows: a record of a dropped partition written again would
    count twice in the rollups. The retained horizon is in the database, so another replica
    (which wrote to that partition before the drop) and a restarted store skip it too."""
    old, kept = record("x-old", T0 + 10), record("x-kept", T0 + 2 * DAY + 1)
    late = record("x-late", T0 + 20)  # first seen after its partition was dropped

    async def body(store: LedgerStore) -> None:
        other = make_store()
        await other.open()
        try:
            assert await other.write([old, kept]) == 2
            assert await store.drop_before(T0 + 2 * DAY + 5) >= 1
            assert await store.drop_before(T0) == 0  # an earlier cutoff: the horizon stays
            assert await other.write([old, late, kept]) == 0
            assert await store.write([old]) == 0
            assert (other.expired, store.expired) == (2, 1)
        finally:
            await other.close()
        restarted = make_store()
        await restarted.open()
        assert await restarted.write([old]) == 0 and restarted.expired == 1
        await restarted.close()
        (row,) = (await store.usage(UsageQuery(T0, T0 + DAY, "acme"))).rows
        assert row.requests == 1  # the rollups count it once
        assert (await store.usage(UsageQuery(T0 + 0.5, T0 + DAY, "acme"))).rows == []

    run(make_store, body)


def test_tags_group_and_filter_and_are_bounded_to_one_key_per_query(
    make_store: StoreFactory,
) -> None:
    records = [
        record("t1", T0 + 10, tags=(("env", "prod"), ("project", "search")), cost=5),
        record("t2", T0 + 20, tags=(("project", "search"),), cost=7),
        record("t3", T0 + 30, tags=(("project", "chat"),), cost=11),
        record("t4", T0 + 40, cost=13),
    ]

    async def body(store: LedgerStore) -> None:
        await store.write(records)
        by_project = await store.usage(UsageQuery(T0, T0 + DAY, "acme", ("tag:project",)))
        assert {r.group["tag:project"]: r.cost_micros for r in by_project.rows} == {
            "chat": 11,
            "search": 12,
        }
        prod = await store.usage(UsageQuery(T0, T0 + DAY, "acme", filters={"tag:env": "prod"}))
        assert [r.cost_micros for r in prod.rows] == [5]
        for bad, message in [
            (UsageQuery(T0, T0 + DAY, "acme", ("tag:project",), {"tag:env": "x"}), "one tag"),
            (UsageQuery(T0 + 1, T0 + DAY, "acme", ("tag:project",)), "whole minutes"),
            (UsageQuery(T0, T0 + DAY, "acme", ("colour",)), "unknown"),
            (UsageQuery(T0, T0 + DAY, "acme", filters={"day": "1"}), "unknown"),
        ]:
            with pytest.raises(ValueError, match=message):
                await store.usage(bad)

    run(make_store, body)


@pytest.mark.parametrize("partition", ["day", "month"])
def test_a_period_starts_where_period_of_says(partition: str) -> None:
    """The retained horizon is the start of a period: exactly where its first second is."""
    for ts in (0.0, T0 + 123.5, 951_782_400.0, 951_868_799.0, 4_102_444_799.0):
        p = period_of(ts, partition)
        assert period_start(p, partition) <= ts < period_start(p + 1, partition)
        assert period_of(period_start(p, partition), partition) == p
