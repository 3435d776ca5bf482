"""Redis killed and restarted while the gateway serves: the configured policy holds
(fail-open keeps serving on per-process limits, fail-closed answers 503), nothing crashes,
the outage is logged, and service recovers by itself when Redis is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import raw
from tests.support.redis_server import RedisServer
from tests.support.stack import Stack

BODY = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(params=["fail_open", "fail_closed"])
def outage(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Stack, RedisServer, str]]:
    redis_server = RedisServer(tmp_path / "redis").start()
    overrides = {
        "state": {"redis_url": redis_server.url, "on_redis_down": request.param},
        "limits": {"tiers": {"default": {"rpm": 10_000}}},
    }
    stack = Stack(tmp_path / "stack", overrides).start()
    yield stack, redis_server, request.param
    stack.stop()
    redis_server.stop()


def call(stack: Stack) -> raw.RawResponse:
    return raw.post(f"{stack.edge_url}/v1/chat/completions", BODY, stack.token())


def until_status(stack: Stack, status: int, timeout: float = 10) -> raw.RawResponse:
    deadline = time.monotonic() + timeout
    while True:
        response = call(stack)
        if response.status == status or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def test_redis_killed_and_restarted(outage: tuple[Stack, RedisServer, str]) -> None:
    stack, redis_server, mode = outage
    assert call(stack).status == 200
    redis_server.stop()
    during = [call(stack) for _ in range(5)]
    if mode == "fail_open":
        assert [r.status for r in during] == [200] * 5
        assert all(r.headers["x-ratelimit-limit-requests"] == "10000" for r in during)
    else:
        assert [r.status for r in during] == [503] * 5
        error = during[0].json()["error"]
        assert error["code"] == "state_unavailable" and during[0].headers["retry-after"] == "1"
    stack.wait_for_log("redis unreachable")
    metrics = raw.request("GET", f"{stack.core_admin_url}/metrics").body.decode()
    assert "interlock_redis_up 0" in metrics and "interlock_redis_outages_total 1" in metrics
    redis_server.start()
    assert until_status(stack, 200).status == 200  # recovers by itself, no restart
    stack.wait_for_log("redis reachable again")
    metrics = raw.request("GET", f"{stack.core_admin_url}/metrics").body.decode()
    assert "interlock_redis_up 1" in metrics
