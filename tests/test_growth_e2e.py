"""Issue 8, finding 4: tenant-chosen model names cannot grow the core's state.

20,000 distinct `mock/<name>` requests (mock: allow_any_model) go through the real edge and
core, concurrently over keep-alive connections. Afterwards the per-target structures hold no
more than their stated caps, /metrics has the same series as before (configured targets and
one `<provider>/*` label), and the core's RSS has not grown with the number of names.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from core.resilience.latency import MAX_ENTRIES as LATENCY_CAP
from core.routing.registry import DYNAMIC_ROUTES
from tests.support.prom import Samples, by_label, scrape
from tests.support.stack import Stack

NAMES = 20_000
WARM_UP = 1_000
CONCURRENCY = 32
NAME_PAD = "n" * 80  # moderate length: the edge's name cap is another test's business
# measured: 4.6 MB with bounded state and the ledger off (2026-12-03); the unbounded board
# grew ~18 MB
RSS_GROWTH_MB = 8


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # The ledger is off: its SQLite file and page cache grow with every record written (by
    # design, bounded: tests/test_ledger_sqlite_batch.py, the bench's RSS runs), and 20,000
    # records' worth (~7 MB here) would hide what this test is after, state kept per name.
    workdir = Path(tmp_path_factory.mktemp("growth"))
    running = Stack(workdir, overrides={"ledger": {"enabled": False}}).start()
    yield running
    running.stop()


async def _drive(stack: Stack, start: int, count: int) -> list[int]:
    token = stack.token()
    url = f"{stack.edge_url}/v1/chat/completions"
    headers = {"authorization": f"Bearer {token}"}
    statuses: list[int] = []
    names = iter(range(start, start + count))

    async def worker(session: aiohttp.ClientSession) -> None:
        for i in names:
            body = {
                "model": f"mock/g{i}-{NAME_PAD}",
                "messages": [{"role": "user", "content": "hi"}],
            }
            async with session.post(url, json=body, headers=headers) as response:
                await response.read()
                statuses.append(response.status)

    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(CONCURRENCY)))
    return statuses


def _rss_mb(stack: Stack) -> float:
    status = Path(f"/proc/{stack.processes[0].pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    assert match is not None
    return int(match.group(1)) / 1024


def _metrics(stack: Stack) -> Samples:
    return scrape(stack.core_admin_url)


def _entries(metrics: Samples) -> dict[str, int]:
    return by_label(metrics, "interlock_state_entries", "kind")


def test_twenty_thousand_model_names_leave_state_bounded(stack: Stack) -> None:
    assert set(asyncio.run(_drive(stack, 0, WARM_UP))) == {200}
    rss_before, metrics_before = _rss_mb(stack), _metrics(stack)
    assert set(asyncio.run(_drive(stack, WARM_UP, NAMES))) == {200}
    rss_after, metrics_after = _rss_mb(stack), _metrics(stack)

    circuits = by_label(metrics_after, "interlock_circuit_open", "target")
    assert sorted(circuits) == ["mock/*", "mock/mock-1"]  # configured targets, one per provider
    # No series appeared for the twenty thousand names: the page has the same series as after
    # the warm-up (their values grew, not their number), and it stays small.
    assert set(metrics_after) == set(metrics_before) and len(metrics_after) < 1000
    entries = _entries(metrics_after)
    assert entries["breakers"] == 2 and entries["latency"] <= min(2, LATENCY_CAP)
    assert entries["dynamic_routes"] == DYNAMIC_ROUTES
    assert rss_after - rss_before < RSS_GROWTH_MB, (rss_before, rss_after)
