"""Ledger write throughput into PostgreSQL: batched records/s through the real store.

    python -m tests.bench.ledger_bench [--records 200000] [--batch 2000] [--url postgresql://...]

Without --url it starts the tests' private PostgreSQL (tests/support/postgres_server.py, with
fsync on, as in production). Records are spread over tenants, models, providers and tags, and
timed like traffic arriving at 20,000/s (so a batch spans a few seconds, as the writer's do);
`--spread-day` scatters them over a whole day instead (every minute's rollup rows touched: the
worst case for the rollup upserts). Reports a figure; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time

from core.ledger.postgres import PostgresStore
from tests.support.ledger_records import T0, random_records
from tests.support.postgres_server import PostgresServer


async def bench(url: str, total: int, batch: int, spread_day: bool) -> float:
    records = random_records(total, seed=11, days=1)
    if not spread_day:
        records = [dataclasses.replace(r, ts=T0 + i / 20_000) for i, r in enumerate(records)]
    store = PostgresStore(url)
    await store.open()
    try:
        started = time.perf_counter()
        for i in range(0, total, batch):
            await store.write(records[i : i + batch])
        return total / (time.perf_counter() - started)
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--url", default=None)
    parser.add_argument("--spread-day", action="store_true")
    args = parser.parse_args()
    server = None
    url = args.url
    if url is None:
        server = PostgresServer(fsync=True).start()
        url = server.database()
    try:
        rate = asyncio.run(bench(url, args.records, args.batch, args.spread_day))
    finally:
        if server is not None:
            server.remove()
    print(f"ledger: {args.records} records in batches of {args.batch}: {rate:,.0f} records/s")


if __name__ == "__main__":
    main()
