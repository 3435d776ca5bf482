"""The dashboard's API on a large ledger: one million records over a month, and how long the
month's charts take to answer, through the real core and edge (and the store alone).

    python -m tests.bench.dashboard_bench [--records 1000000] [--postgres] [--keep DIR]

Fills a ledger (SQLite by default; --postgres: the tests' private PostgreSQL) through the
store's own `write` (so the rollups are the ones the writer keeps), 60 tenants, 6 models over 3
providers, a `project` tag, spread over the 30 days before now. Then starts an edge and core on
that ledger and times, with an operator token, every call the page makes for "Last 30 days":
the usage API grouped by day and provider (the spend, tokens and requests/s charts, with the
totals), by model, tenant and tag, and the dashboard's health (the latest 20,000 records) and
request-log panels; and the "Last 7 days (by hour)" chart (hour rollups). Each call is timed
5 times; the median is reported. The bound checked: the month's chart (day x provider, with
totals) answers in under 200 ms (exit status 1 if not).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from core.ledger.record import LedgerRecord
from core.ledger.store import LedgerStore
from core.spend.usage import UsageSplit
from tests.support import raw
from tests.support.stack import Stack
from tests.support.usage_stack import admin_token

DAY = 86400
BOUND_MS = 200.0
PROVIDERS = {
    "openai": ["gpt-a", "gpt-b"],
    "anthropic": ["claude-a", "claude-b"],
    "mock": ["m-a", "m-b"],
}


def records(first: int, count: int, total: int, now: float) -> list[LedgerRecord]:
    """Records `first` .. `first + count` of `total`, evenly over the 30 days before `now`."""
    rng = random.Random(first)
    pairs = [(p, m) for p, models in PROVIDERS.items() for m in models]
    out = []
    for n in range(first, first + count):
        provider, model = pairs[n % len(pairs)]
        tokens = rng.randint(10, 2000)
        out.append(
            LedgerRecord(
                request_id=f"req_bench{n:08d}",
                ts=now - 30 * DAY + (n + 0.5) * (30 * DAY - 120) / total,
                tenant=f"tenant{rng.randrange(60):02d}",
                tags=(("project", f"p{rng.randrange(8)}"),),
                api="openai",
                requested_model=model,
                served_model=model,
                provider=provider,
                key_id="k_bench",
                usage=UsageSplit(input=tokens, cache_read=tokens // 4, output=tokens // 3),
                cost_micros=tokens * 3,
                price_version="bench",
                unpriced=False,
                outcome="ok" if rng.random() < 0.97 else "timeout",
                attempts=1,
                latency_ms=rng.uniform(50, 2000),
                ttft_ms=rng.uniform(20, 400),
            )
        )
    return out


async def fill(store: LedgerStore, total: int, now: float, batch: int = 5000) -> float:
    """Writes through the store's own `write` (rollups included); built a slice at a time."""
    await store.open()
    try:
        started = time.perf_counter()
        for first in range(0, total, 100_000):
            chunk = records(first, min(100_000, total - first), total, now)
            for j in range(0, len(chunk), batch):
                await store.write(chunk[j : j + batch])
        return time.perf_counter() - started
    finally:
        await store.close()


def timed(url: str, token: str, repeats: int = 5) -> tuple[float, Any]:
    times, body = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        answer = raw.request("GET", url, headers={"authorization": f"Bearer {token}"})
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status == 200, answer.body[:300]
        body = answer.json()
    return statistics.median(times), body


def measure(stack: Stack, now: float) -> dict[str, float]:
    token = admin_token(stack)
    end = (int(now) // DAY + 1) * DAY
    month = {"start": end - 30 * DAY, "end": end}
    calls = {
        "usage day x provider (the month's chart, with totals)": ("usage", "day,provider"),
        "usage hour x provider (7 days by hour)": ("usage", "hour,provider"),
        "usage day x model": ("usage", "day,model"),
        "usage day x tenant": ("usage", "day,tenant"),
        "usage by tenant (top tenants)": ("usage", "tenant"),
        "usage by model (cost per model)": ("usage", "model"),
        "usage by tag:project (top tags)": ("usage", "tag:project"),
        "dashboard health (latest 20,000 records)": ("dashboard/health", None),
        "dashboard request log (50 newest)": ("dashboard/requests", None),
    }
    out = {}
    for name, (path, group_by) in calls.items():
        params: dict[str, Any] = dict(month)
        if name.startswith("usage hour"):
            params["start"] = end - 7 * DAY
        if group_by:
            params |= {"group_by": group_by, "limit": 1000}
        url = f"{stack.edge_url}/v1/{path}?{urlencode(params)}"
        out[name], body = timed(url, token)
        if path == "usage":
            assert body["totals"]["requests"] > 0
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--keep", type=Path, help="directory to keep the ledger in")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="dashboard-bench-"))
    now = time.time()
    server = None
    ledger: dict[str, str] = {}
    if args.postgres:
        from tests.support.postgres_server import PostgresServer

        server = PostgresServer().start()
        ledger["url"] = server.database()
    stack = Stack(workdir / "stack", {"ledger": ledger} if ledger else None)
    try:
        from core.ledger import store_for

        store = store_for(stack.config.ledger.url, stack.config.ledger.partition)
        seconds = asyncio.run(fill(store, args.records, now))
        kind = stack.config.ledger.url.split(":")[0]
        print(f"filled {args.records:,} records in {seconds:.1f} s ({kind})")
        stack.start()
        results = measure(stack, now)
    finally:
        stack.stop()
        if server is not None:
            server.stop()
    for name, ms in results.items():
        print(f"{ms:8.1f} ms  {name}")
    chart = results["usage day x provider (the month's chart, with totals)"]
    verdict = "ok" if chart < BOUND_MS else "FAILED"
    print(f"bound: the month's chart under {BOUND_MS:.0f} ms: {verdict}")
    return 0 if chart < BOUND_MS else 1


if __name__ == "__main__":
    sys.exit(main())
