"""Limits while Redis is down (issue 10, item 11), through real edges, cores and redis-server:
fail-open admission stays near the shared limit across replicas (each replica's local bucket
holds 1/`state.replicas` of it; before, each started a whole bucket), and under fail-closed a
core says not ready on /readyz while it could only answer 503, and ready again once Redis is
back (with no traffic to tell it)."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support import raw
from tests.support.redis_server import RedisServer
from tests.support.stack import Cluster, Stack

BODY = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}
RPM = 60  # burst 0.1: a bucket of 6, refilled at 1 a second


def test_fail_open_across_two_replicas_stays_near_the_limit(tmp_path: Path) -> None:
    redis_server = RedisServer(tmp_path / "redis").start()
    overrides = {
        "state": {"redis_url": redis_server.url, "on_redis_down": "fail_open", "replicas": 2},
        "limits": {"tiers": {"default": {"rpm": RPM}}},
    }
    cluster = Cluster(tmp_path / "cluster", overrides, cores=2, edges=1).start()
    try:
        redis_server.stop()
        token = cluster.token()
        started = time.monotonic()
        statuses = [
            raw.post(f"{cluster.edge_url}/v1/chat/completions", BODY, token).status
            for _ in range(40)
        ]
        elapsed = time.monotonic() - started
        assert set(statuses) <= {200, 429}
        # Both replicas together: the shared bucket (6) plus its refill (1/s), plus one for
        # each replica's rounding; before, each replica admitted a whole bucket of its own.
        assert statuses.count(200) <= 6 + elapsed * RPM / 60 + 2, (statuses, elapsed)
        assert all("redis unreachable" in cluster.core_log(i) for i in (0, 1))  # both served
    finally:
        cluster.stop()
        redis_server.stop()


def readyz(stack: Stack) -> raw.RawResponse:
    return raw.request("GET", f"{stack.core_admin_url}/readyz")


def until_ready(stack: Stack, status: int, timeout: float = 10) -> raw.RawResponse:
    deadline = time.monotonic() + timeout
    while (response := readyz(stack)).status != status and time.monotonic() < deadline:
        time.sleep(0.1)
    return response


def test_fail_closed_is_not_ready_while_redis_is_down(tmp_path: Path) -> None:
    redis_server = RedisServer(tmp_path / "redis").start()
    overrides = {"state": {"redis_url": redis_server.url, "on_redis_down": "fail_closed"}}
    stack = Stack(tmp_path / "stack", overrides).start()
    try:
        assert readyz(stack).status == 200
        redis_server.stop()
        down = until_ready(stack, 503)
        assert (down.status, down.json()) == (503, {"status": "state_unavailable"})
        redis_server.start()
        assert until_ready(stack, 200).status == 200  # no request needed to notice
    finally:
        stack.stop()
        redis_server.stop()


def test_fail_open_stays_ready_while_redis_is_down(tmp_path: Path) -> None:
    redis_server = RedisServer(tmp_path / "redis").start()
    overrides = {"state": {"redis_url": redis_server.url, "on_redis_down": "fail_open"}}
    stack = Stack(tmp_path / "stack", overrides).start()
    try:
        redis_server.stop()
        assert readyz(stack).status == 200  # it serves, on per-replica limits
    finally:
        stack.stop()
        redis_server.stop()
