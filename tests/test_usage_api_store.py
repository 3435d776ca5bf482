"""The usage API opens the ledger store itself when its first query comes before the writer's
first flush: two opens at once must make one PostgreSQL pool, never a second, leaked one."""

from __future__ import annotations

import asyncio

import asyncpg

from core.ledger.postgres import PostgresStore
from tests.support.postgres_server import PostgresServer


def test_concurrent_opens_of_the_postgres_store_make_one_pool(postgres: PostgresServer) -> None:
    url = postgres.database()

    async def main() -> int:
        store = PostgresStore(url)
        await asyncio.gather(store.open(), store.open(), store.open())
        con = await asyncpg.connect(url)
        try:
            count = await con.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await con.close()
            await store.close()
        return int(count)

    assert asyncio.run(main()) == 1  # one pool of min_size 1
