"""Guarded background jobs: a job that raises is logged, counted and keeps running; stop()
after a failure is clean and the owner's final action (the last flush) still runs.

Before: the job's task died on the first exception, `running` still said True, and stop()
re-raised it, so Settlements.stop() never reached its final flush.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path

import pytest
import redis

from core.limits.tenant import Settlements
from core.observe.metrics import families
from core.resilience.circuit import BreakerPolicy
from core.resilience.circuit_board import BreakerBoard
from core.state.store import MemoryStore
from shared.periodic import Periodic, failure_counts
from tests.support import raw
from tests.support.prom import page_of, samples, value
from tests.support.redis_server import RedisServer
from tests.support.stack import Stack

SECRET = "sk-must-not-be-logged"


def test_a_job_that_raises_keeps_running_and_is_counted(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []
    six_runs = asyncio.Event()

    async def job() -> None:
        runs.append(len(runs))
        if len(runs) >= 6:
            six_runs.set()
        if len(runs) <= 3:
            raise RuntimeError(f"boom with {SECRET}")

    async def scenario() -> tuple[bool, int]:
        periodic = Periodic("test_flaky_job", 0.01, job)
        periodic.start()
        try:
            await asyncio.wait_for(six_runs.wait(), 10)
            return periodic.running, periodic.failures
        finally:
            await periodic.stop()

    with caplog.at_level(logging.WARNING, logger="interlock.periodic"):
        running, failures = asyncio.run(scenario())
    assert running and failures == 3 and len(runs) >= 6
    assert failure_counts()["test_flaky_job"] == 3
    logged = caplog.text
    assert "background job test_flaky_job failed (RuntimeError at " in logged
    assert "test_periodic.py" in logged and "in job" in logged  # where it was raised
    assert "recovered after 3 failures" in logged
    assert SECRET not in logged  # the exception's message may carry secrets: never logged
    assert len(re.findall("failed", logged)) == 1  # a streak logs once, not every interval


class _FailingOnceStore(MemoryStore):
    """The first settlement raises an unexpected error (not the Redis-down policy's)."""

    def __init__(self) -> None:
        super().__init__()
        self.adjusted: list[tuple[str, float]] = []
        self.failed = asyncio.Event()

    async def adjust(self, key: str, delta: float, capacity: float, rate: float) -> None:
        if not self.adjusted:
            self.adjusted.append(("failed", delta))
            self.failed.set()
            raise KeyError("unexpected")
        self.adjusted.append((key, delta))


def test_stop_after_a_failure_still_runs_the_final_flush() -> None:
    async def scenario() -> list[tuple[str, float]]:
        store = _FailingOnceStore()
        settlements = Settlements(store)
        settlements._periodic.interval_s = 0.01
        settlements.start()
        settlements.defer("bucket-a", 5.0, 100)
        await asyncio.wait_for(store.failed.wait(), 10)  # the periodic flush has raised
        settlements.defer("bucket-b", 7.0, 100)
        await settlements.stop()  # must not raise, must flush bucket-b
        return store.adjusted

    adjusted = asyncio.run(scenario())
    assert adjusted[0] == ("failed", 5.0) and ("bucket-b", 7.0) in adjusted


def test_failures_are_on_the_core_metrics_page() -> None:
    calls: list[None] = []
    twice = asyncio.Event()

    async def job() -> None:
        calls.append(None)
        if len(calls) == 2:
            twice.set()
        raise ValueError("x")

    async def scenario() -> bytes:
        periodic = Periodic("test_metrics_job", 0.01, job)
        periodic.start()
        await asyncio.wait_for(twice.wait(), 10)
        await periodic.stop()
        return page_of(families(MemoryStore(), BreakerBoard(BreakerPolicy(), MemoryStore())))

    page = asyncio.run(scenario())
    assert "# TYPE interlock_background_job_failures_total counter" in page
    assert _count(page, "test_metrics_job") >= 2


def test_a_failing_breaker_sync_in_the_core_is_logged_counted_and_retried(tmp_path: Path) -> None:
    """A real core whose breaker sync hits an unexpected Redis reply (a key of the wrong type):
    the job keeps running (the count grows), the log names it, requests are still served."""
    redis_server = RedisServer(tmp_path / "redis").start()
    stack = Stack(tmp_path / "stack", {"state": {"redis_url": redis_server.url}}).start()
    try:
        client = redis.Redis.from_url(redis_server.url)
        client.rpush("il:{b:mock/mock-1}:open", "not-a-timestamp")
        client.close()
        stack.wait_for_log("background job breaker_sync failed (ResponseError at ")
        first = _sync_failures(stack)
        assert first >= 1
        body = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}
        assert raw.post(f"{stack.edge_url}/v1/chat/completions", body, stack.token()).status == 200
        deadline = time.monotonic() + 10
        while _sync_failures(stack) <= first:  # still running on its interval
            assert time.monotonic() < deadline, "breaker_sync stopped running"
            time.sleep(0.1)
    finally:
        stack.stop()
        redis_server.stop()


def _sync_failures(stack: Stack) -> int:
    page = raw.request("GET", f"{stack.core_admin_url}/metrics").body.decode()
    return _count(page, "breaker_sync")


def _count(page: str, job: str) -> int:
    found = value(samples(page), "interlock_background_job_failures_total", job=job)
    return int(found) if found is not None else -1


def test_stop_ends_a_job_that_swallowed_its_cancel() -> None:
    """Python 3.11's `asyncio.wait_for` (or a library) can lose a cancel: stop() cancels
    again at the job's next await instead of waiting for it without end."""
    swallowed: list[bool] = []

    async def job() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            swallowed.append(True)  # and goes on as if nothing happened
        await asyncio.sleep(3600)

    async def scenario() -> float:
        periodic = Periodic("swallows", 0.001, job)
        periodic.start()
        await asyncio.sleep(0.05)  # inside the job now
        began = time.monotonic()
        await asyncio.wait_for(periodic.stop(), 5)
        return time.monotonic() - began

    took = asyncio.run(scenario())
    assert swallowed == [True]
    assert took < 1.0
