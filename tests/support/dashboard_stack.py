"""The dashboard's end-to-end stack: a real edge and core on the embedded SQLite ledger, seeded
with a month of records of three tenants (several models, providers, outcomes and tags) written
through the ledger's own store, plus live requests through the official SDK, and helpers to ask
the APIs the page reads, so tests can compare what the page shows with what the API says."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from core.ledger.record import LedgerRecord
from core.ledger.sqlite import SqliteStore
from core.spend.usage import UsageSplit
from tests.support import raw
from tests.support.ledger_load import ledger_rows
from tests.support.sdk import client
from tests.support.stack import Stack
from tests.support.usage_stack import admin_token

A, B, C = "acme", "beta", "gamma"
DAY = 86400
SEEDED = 600  # records over the last 30 days
LIVE = [(A, "mock-1"), (A, "mock-1"), (A, "mock-2"), (B, "mock-1")]
PROVIDERS = [("openai", "gpt-x"), ("anthropic", "claude-x"), ("mock", "mock-1")]
OUTCOMES = ["ok"] * 16 + ["timeout", "rate_limited", "cut:transient", "cache_hit"]


def seeded_records(now: float, n: int = SEEDED, seed: int = 15) -> list[LedgerRecord]:
    """`n` records spread over the 30 days before `now`, newest about a minute ago."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        tenant = rng.choice([A, A, B, C])
        provider, model = rng.choice(PROVIDERS)
        outcome = rng.choice(OUTCOMES)
        tokens = rng.randint(10, 500)
        hit = outcome == "cache_hit"
        billed = UsageSplit(input=tokens, cache_read=tokens // 3, output=tokens // 2)
        out.append(
            LedgerRecord(
                request_id=f"req_seed{i:05d}",
                ts=now - 60 - rng.random() * 30 * DAY,
                tenant=tenant,
                tags=(("project", rng.choice(["search", "ads", "chat"])),),
                api="openai",
                requested_model=model,
                served_model=f"{model}-2026",
                provider=provider,
                key_id="k_0123abcd",
                usage=UsageSplit() if hit else billed,
                cost_micros=0 if hit else tokens * 37,
                price_version="test",
                unpriced=False,
                outcome=outcome,
                attempts=1,
                latency_ms=rng.uniform(20, 900),
                ttft_ms=rng.uniform(5, 200) if rng.random() < 0.5 else None,
                saved_input=tokens if hit else 0,
                saved_output=tokens // 2 if hit else 0,
            )
        )
    return out


def seed(url: str, records: list[LedgerRecord]) -> None:
    async def write() -> None:
        store = SqliteStore(Path(url.removeprefix("sqlite:///")))
        await store.open()
        try:
            await store.write(records)
        finally:
            await store.close()

    asyncio.run(write())


def dashboard_stack(workdir: Path) -> Iterator[Stack]:
    """A started stack with the seeded month and the live traffic in its ledger."""
    overrides: dict[str, Any] = {
        "models": {
            "mock-1": {"provider": "mock", "model": "mock-1"},
            "mock-2": {"provider": "mock", "model": "mock-2"},
        },
        "ledger": {"flush_interval": "50ms"},
        "limits": {"tiers": {"free": {"rpm": 600, "tpm": 100000}}, "default_tier": "free"},
        "budgets": {
            "acme-daily": {"tenant": A, "period": "day", "limit": "5.00"},
            "beta-monthly": {"tenant": B, "period": "month", "limit": "20.00"},
            "everyone": {"period": "month", "limit": "100.00", "action": "warn"},
        },
    }
    stack = Stack(workdir, overrides)
    seed(stack.config.ledger.url, seeded_records(time.time()))
    stack.start()
    try:
        for tenant, model in LIVE:
            sdk = client(stack).with_options(api_key=stack.token(tenant))
            sdk.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": f"hello from {tenant}"}],
                extra_headers={"x-interlock-tags": "project=search"},
            )
        ledger_rows(stack.config.ledger.url, SEEDED + len(LIVE))  # waits until flushed
        yield stack
    finally:
        stack.stop()


def get(stack: Stack, path: str, token: str, **params: Any) -> raw.RawResponse:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    url = f"{stack.edge_url}{path}" + (f"?{query}" if query else "")
    return raw.request("GET", url, headers={"authorization": f"Bearer {token}"})


__all__ = ["A", "B", "C", "admin_token", "dashboard_stack", "get", "seeded_records"]
