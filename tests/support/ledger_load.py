"""Load for the ledger's end-to-end tests: many chat requests through the official SDK, and
what the ledger holds afterwards (read straight from its database, never through the core)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import openai

from tests.support.sdk import async_client
from tests.support.stack import Stack


async def load(
    stack: Stack,
    total: int,
    concurrency: int,
    midway: Callable[[], Awaitable[None]] | None = None,
) -> list[str]:
    """`total` chat completions, `concurrency` at a time; `midway` runs once half are done.
    Returns the request ids of the answers that succeeded."""
    client = async_client(stack)
    ok: list[str] = []
    done = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    trigger = asyncio.Event()

    async def worker() -> None:
        nonlocal done
        while not queue.empty():
            queue.get_nowait()
            try:
                raw = await client.chat.completions.with_raw_response.create(
                    model="mock-1", messages=[{"role": "user", "content": "count me"}]
                )
                ok.append(raw.headers["x-request-id"])
            except openai.APIError:
                pass
            done += 1
            if done == total // 2:
                trigger.set()

    async def at_midway() -> None:
        if midway is not None:
            await trigger.wait()
            await midway()

    await asyncio.gather(at_midway(), *(worker() for _ in range(concurrency)))
    await client.close()
    return ok


async def postgres_ledger(url: str) -> tuple[list[str], int]:
    """The request ids of the raw records, and the requests the day rollups count."""
    con = await asyncpg.connect(url)
    try:
        ids = [r["request_id"] for r in await con.fetch("SELECT request_id FROM ledger_records")]
        rolled = await con.fetchval(
            "SELECT COALESCE(SUM(requests), 0) FROM ledger_rollups "
            "WHERE grain = 'day' AND tag_key = ''"
        )
        return ids, int(rolled)
    except asyncpg.UndefinedTableError:
        return [], 0  # the core has not reached the database yet
    finally:
        await con.close()


def wait_for_postgres_ledger(url: str, count: int, timeout: float = 30.0) -> tuple[list[str], int]:
    deadline = time.monotonic() + timeout
    while True:
        ids, rolled = asyncio.run(postgres_ledger(url))
        if len(ids) >= count or time.monotonic() > deadline:
            return ids, rolled
        time.sleep(0.1)


def sqlite_rows(path: Path, count: int, timeout: float = 15.0) -> list[sqlite3.Row]:
    """The raw records once there are `count` of them (the writer flushes in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        rows: list[sqlite3.Row] = []
        if path.exists():
            db = sqlite3.connect(path)
            db.row_factory = sqlite3.Row
            try:
                rows = db.execute("SELECT * FROM ledger_records ORDER BY ts").fetchall()
            except sqlite3.OperationalError:
                rows = []  # the schema is not there yet
            db.close()
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


async def _postgres_rows(url: str) -> list[Mapping[str, Any]]:
    con = await asyncpg.connect(url)
    try:
        return list(await con.fetch("SELECT * FROM ledger_records ORDER BY ts"))
    except asyncpg.UndefinedTableError:
        return []  # the core has not reached the database yet
    finally:
        await con.close()


def ledger_rows(url: str, count: int, timeout: float = 15.0) -> list[Mapping[str, Any]]:
    """The raw records of the ledger `url` names (sqlite:///<path> or postgresql://) once
    there are `count` of them, read straight from the database, oldest first."""
    if url.startswith("sqlite:///"):
        found = sqlite_rows(Path(url.removeprefix("sqlite:///")), count, timeout)
        return [dict(zip(row.keys(), tuple(row), strict=True)) for row in found]
    deadline = time.monotonic() + timeout
    while True:
        rows = asyncio.run(_postgres_rows(url))
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)
