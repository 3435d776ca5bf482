"""Chaos: two cores, one edge, one Redis; a primary upstream that fails at random before the
first byte (statuses, resets, stalls, garbage and malformed data) and a healthy fallback; under
closed-loop load for a bounded time, one core is frozen (SIGSTOP/SIGCONT), the other killed
(SIGKILL) and restarted, and Redis restarted.

What must hold (issue 10):
- no client-visible error where a healthy fallback or replica existed: a request may fail only
  if it was in flight on the moment a replica was killed or frozen (its bytes were on that
  replica; nothing can move them). Upstream faults are all before the first byte: a stream's
  mid-way faults have their own tests (tests/test_reliability_*), since no fallback can hide
  them;
- no request hangs past its deadline (the client's own timeout is far beyond it);
- usage records = served requests: every request the client saw served has exactly one `ok`
  usage line, except one a SIGKILL took within the usage log's flush interval (the stated
  bound), and no request the client saw fail is billed `ok`, except those the freeze caught;
- RSS of every process stays bounded.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.chaos import Load, Record, rss_mb, usage_lines
from tests.support.fake_faults import FakeFaults, Fault
from tests.support.net import wait_http
from tests.support.redis_server import RedisServer
from tests.support.stack import Cluster

DURATION_S = 40.0
WORKERS = 8
DEADLINE_S = 8.0
FREEZE_AT, THAW_AT = 6.0, 12.0
KILL_AT, RESTART_AT = 16.0, 17.0
REDIS_DOWN_AT, REDIS_UP_AT = 24.0, 28.0
FLUSH_BOUND_S = 0.5  # the usage log flushes every 100 ms; a margin for a loaded machine
MAX_RSS_MB = 400.0
FAULTS = (
    Fault("status", "503"),
    Fault("status", "429"),
    Fault("reset"),
    Fault("stall", "30"),
    Fault("garbage", "first"),
    Fault("malformed", "first"),
)


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[FakeFaults, FakeFaults]]:
    flaky, healthy = FakeFaults(fault_rate=0.5, mix=FAULTS, seed=10), FakeFaults()
    flaky.start()
    healthy.start()
    yield flaky, healthy
    flaky.stop()
    healthy.stop()


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("chaos-redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    upstreams: tuple[FakeFaults, FakeFaults],
    redis: RedisServer,
) -> Iterator[Cluster]:
    flaky, healthy = upstreams
    overrides = {
        "state": {"redis_url": redis.url, "on_redis_down": "fail_open"},
        "core": {
            "connect_timeout": "1s",
            "resilience": {
                "first_byte_timeout": "2s",
                "completion_timeout": "3s",
                "stream_idle_timeout": "2s",
                "total_deadline": f"{DEADLINE_S}s",
                "max_retries": 1,
                "backoff_base": "10ms",
                "backoff_cap": "100ms",
            },
        },
        "providers": {
            "flaky": {"kind": "openai", "base_url": f"{flaky.url}/v1", "api_key": "sk-flaky"},
            "healthy": {"kind": "openai", "base_url": f"{healthy.url}/v1", "api_key": "sk-ok"},
        },
        "models": {
            "chaos": {
                "targets": [
                    {"provider": "flaky", "model": "primary"},
                    {"provider": "healthy", "model": "fallback"},
                ]
            }
        },
    }
    running = Cluster(tmp_path_factory.mktemp("chaos"), overrides, cores=2, edges=1).start()
    yield running
    running.stop()


def _core(cluster: Cluster, index: int) -> subprocess.Popen[bytes]:
    """Core `index` as Cluster.start spawned it (cores first, in order)."""
    return cluster.processes[index]


def _kill(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.wait()


class Chaos:
    """The scripted faults, on a clock shared with the load's records."""

    def __init__(self, cluster: Cluster, redis: RedisServer, start: float) -> None:
        self.cluster = cluster
        self.redis = redis
        self.start = start
        self.moments: dict[str, float] = {}

    async def at(self, offset: float, name: str, action: object) -> None:
        await asyncio.sleep(max(0.0, self.start + offset - time.monotonic()))
        self.moments[name] = time.monotonic()
        await asyncio.to_thread(action)  # type: ignore[arg-type]

    async def run(self) -> None:
        frozen = _core(self.cluster, 1)
        killed = _core(self.cluster, 0)
        await self.at(FREEZE_AT, "freeze", lambda: frozen.send_signal(signal.SIGSTOP))
        await self.at(THAW_AT, "thaw", lambda: frozen.send_signal(signal.SIGCONT))
        await self.at(KILL_AT, "kill", lambda: _kill(killed))
        await self.at(RESTART_AT, "restart", self._restart_core0)
        await self.at(REDIS_DOWN_AT, "redis_down", self.redis.stop)
        await self.at(REDIS_UP_AT, "redis_up", self.redis.start)

    def _restart_core0(self) -> None:
        cluster = self.cluster
        port, admin = cluster.core_ports[0], cluster.core_admin_ports[0]
        process = cluster._spawn("core", port, "core0-restarted", admin)
        wait_http(f"http://127.0.0.1:{admin}/readyz", process=process)


def _excused(record: Record, moments: dict[str, float]) -> bool:
    """In flight when a replica was frozen or killed: its bytes were on that replica."""
    return record.overlaps(moments["freeze"]) or record.overlaps(moments["kill"])


def test_chaos(cluster: Cluster, redis: RedisServer) -> None:
    start = time.monotonic()
    load = Load(cluster.edge_urls[0], cluster.token(), "chaos", DEADLINE_S + 20)
    chaos = Chaos(cluster, redis, start)

    async def both() -> list[Record]:
        records, _ = await asyncio.gather(load.run(WORKERS, start + DURATION_S), chaos.run())
        return records

    records = asyncio.run(both())
    moments = chaos.moments
    assert len(records) > 200, "the load did not run"

    hung = [r for r in records if r.ended - r.started > DEADLINE_S + 5]
    assert not hung, [(r.problem, round(r.ended - r.started, 1)) for r in hung[:5]]
    failed = [r for r in records if not r.served]
    unexcused = [r for r in failed if not _excused(r, moments)]
    assert not unexcused, (
        f"{len(unexcused)} of {len(records)} failed with a healthy fallback and replica: "
        + "; ".join(f"t={r.started - start:.1f} {r.problem}" for r in unexcused[:8])
    )

    served = {r.request_id: r for r in records if r.served}
    billed = _settled_usage(cluster)
    killed_before_flush = {
        rid
        for rid, r in served.items()
        if moments["kill"] - FLUSH_BOUND_S <= r.ended <= moments["kill"]
    }
    missing = set(served) - {rid for rid, outcome in billed.items() if outcome == "ok"}
    assert missing <= killed_before_flush, f"{len(missing - killed_before_flush)} served, unbilled"
    wrongly_billed = [
        r.request_id
        for r in failed
        if billed.get(r.request_id or "") == "ok" and not r.overlaps(moments["freeze"])
    ]
    assert not wrongly_billed, f"{len(wrongly_billed)} failed requests were billed ok"

    for process in cluster.processes:
        if process.poll() is None:
            assert rss_mb(process.pid) < MAX_RSS_MB


def _settled_usage(cluster: Cluster) -> dict[str, str]:
    """Every usage line of every core, once the survivors have flushed."""
    time.sleep(0.5)
    logs = "\n".join(cluster.core_log(i) for i in range(2))
    restarted = cluster.logs["core0-restarted"]
    logs += "\n" + Path(restarted).read_text(errors="replace")
    return usage_lines(logs)
