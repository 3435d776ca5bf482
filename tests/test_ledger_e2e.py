"""The ledger through a real stack (edge + core subprocesses, the official SDK): one record per
admitted request outcome in the embedded SQLite default, and nothing lost or duplicated in
PostgreSQL when the database is killed (-9) under load, when it is down while requests are
served (spill to disk, replay), or when the core is stopped (SIGTERM) under load."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.support.ledger_load import load, sqlite_rows, wait_for_postgres_ledger
from tests.support.net import free_port
from tests.support.postgres_server import PostgresServer
from tests.support.sdk import client
from tests.support.stack import Stack


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of the test's own, since the test kills or stops it."""
    server = PostgresServer().start()
    yield server
    server.remove()


def test_every_admitted_outcome_is_one_record_in_the_sqlite_default(tmp_path: Path) -> None:
    closed = free_port()
    stack = Stack(
        tmp_path,
        {
            "providers": {
                "mock": {"kind": "mock", "allow_any_model": True},
                "down": {
                    "kind": "openai",
                    "base_url": f"http://127.0.0.1:{closed}/v1",
                    "api_key": "sk-down-secret",
                },
            },
            "models": {
                "mock-1": {"provider": "mock", "model": "mock-1"},
                "broken": {"provider": "down", "model": "gpt-down"},
            },
            "ledger": {"flush_interval": "50ms"},
        },
    ).start()
    try:
        sdk = client(stack)
        messages = [{"role": "user", "content": "hello"}]
        tags = {"x-interlock-tags": "project=search, env=prod"}
        sdk.chat.completions.create(
            model="mock-1",
            messages=messages,  # type: ignore[arg-type]
            extra_headers=tags,
        )
        with pytest.raises(openai.BadRequestError) as refused:  # never admitted: no record
            sdk.chat.completions.create(
                model="mock-1",
                messages=messages,  # type: ignore[arg-type]
                extra_headers={"x-interlock-tags": "Project=search"},
            )
        assert refused.value.param == "x-interlock-tags"  # type: ignore[attr-defined]
        stream = sdk.chat.completions.create(
            model="mock-1",
            messages=messages,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
        for _ in stream:
            pass
        with pytest.raises(openai.APIError):
            sdk.chat.completions.create(model="broken", messages=messages)  # type: ignore[arg-type]
        with pytest.raises(openai.NotFoundError):  # never admitted: no record
            sdk.chat.completions.create(model="nope", messages=messages)  # type: ignore[arg-type]
        rows = sqlite_rows(tmp_path / "state" / "ledger.sqlite3", 3)
    finally:
        stack.stop()
    assert len(rows) == 3
    plain, streamed, failed = rows
    for row in (plain, streamed):
        assert (row["tenant"], row["outcome"], row["provider"]) == ("acme", "ok", "mock")
        assert row["input"] > 0 and row["output"] > 0
        # Priced from the catalogue's entry for the mock (core/spend/catalogue.json).
        assert row["unpriced"] == 0 and row["cost_micros"] > 0
        assert str(row["price_version"]).startswith("mock/")
    assert plain["ttft_ms"] is None and streamed["ttft_ms"] is not None
    assert json.loads(plain["tags"]) == {"env": "prod", "project": "search"}
    assert json.loads(streamed["tags"]) == {}
    assert failed["provider"] == "down" and failed["outcome"] != "ok"
    assert failed["key_id"].startswith("k_") and "sk-down" not in failed["key_id"]
    assert (failed["input"], failed["output"], failed["cost_micros"]) == (0, 0, 0)


def test_kill_9_of_postgres_under_load_loses_and_duplicates_nothing(
    tmp_path: Path, own_postgres: PostgresServer
) -> None:
    url = own_postgres.database()
    stack = Stack(tmp_path, {"ledger": {"url": url, "flush_interval": "50ms"}}).start()

    async def crash_and_recover() -> None:
        await asyncio.to_thread(own_postgres.kill9)
        await asyncio.sleep(1.0)  # requests keep being served meanwhile
        await asyncio.to_thread(own_postgres.start)

    try:
        ok = asyncio.run(load(stack, 400, 16, crash_and_recover))
        assert len(ok) == 400
        ids, rolled = wait_for_postgres_ledger(url, 400)
    finally:
        stack.stop()
    assert sorted(ids) == sorted(ok)  # every request once, no other
    assert rolled == 400  # the rollups counted each once too


def test_requests_served_while_postgres_is_down_land_once_when_it_returns(
    tmp_path: Path, own_postgres: PostgresServer
) -> None:
    url = own_postgres.database()
    own_postgres.stop()
    stack = Stack(
        tmp_path, {"ledger": {"url": url, "flush_interval": "50ms", "queue_max": 5}}
    ).start()
    try:
        ok = asyncio.run(load(stack, 60, 4))
        assert len(ok) == 60  # the database being down never fails a request
        spill = tmp_path / "state" / "ledger-spill" / "ledger.spill"
        assert spill.exists() and spill.stat().st_size > 0
        own_postgres.start()
        ids, rolled = wait_for_postgres_ledger(url, 60)
    finally:
        stack.stop()
    assert sorted(ids) == sorted(ok) and rolled == 60


def test_sigterm_of_a_core_under_load_flushes_what_it_holds(
    tmp_path: Path, own_postgres: PostgresServer
) -> None:
    url = own_postgres.database()
    # A long flush interval: at SIGTERM most records are still in memory.
    stack = Stack(tmp_path, {"ledger": {"url": url, "flush_interval": "30s"}}).start()
    core = stack.processes[0]

    async def terminate() -> None:
        core.send_signal(signal.SIGTERM)

    try:
        ok = asyncio.run(load(stack, 300, 12, terminate))
        stack.wait_exit(core)
        ids, rolled = wait_for_postgres_ledger(url, len(ok), timeout=5)
    finally:
        stack.stop()
    assert len(ok) >= 150
    assert set(ok) <= set(ids)  # every answered request is in the ledger
    assert len(ids) == len(set(ids)) == rolled  # and nothing twice
