"""Redis killed and restarted while the gateway serves: the configured policy holds
(fail-open keeps serving on per-process limits, fail-closed answers 503), nothing crashes,
the outage is logged, and service recovers by itself when Redis is back.

The same over redis://, rediss:// (TLS) and unix://, and for a Redis that answers but cannot
serve: a wrong password (recovered by fixing the password, no restart) and a Redis still
LOADING its dataset. Before, the last two were 500s and TLS/unix used another client.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import raw
from tests.support.prom import scrape, value
from tests.support.redis_server import RedisServer
from tests.support.stack import Stack

BODY = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}
MODES = ["fail_open", "fail_closed"]


def gateway(tmp_path: Path, redis_url: str, mode: str) -> Stack:
    overrides = {
        "state": {"redis_url": redis_url, "on_redis_down": mode},
        "limits": {"tiers": {"default": {"rpm": 10_000}}},
    }
    return Stack(tmp_path / "stack", overrides).start()


@pytest.fixture(params=[(m, t) for t in ("tcp", "tls", "unix") for m in MODES], ids=str)
def outage(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Stack, RedisServer, str]]:
    mode, transport = request.param
    redis_server = RedisServer(tmp_path / "redis", tls=transport == "tls").start()
    url = redis_server.unix_url if transport == "unix" else redis_server.url
    stack = gateway(tmp_path, url, mode)
    yield stack, redis_server, mode
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


def redis_up(stack: Stack) -> tuple[float | None, float | None]:
    """interlock_redis_up and interlock_redis_outages_total, from the core's /metrics."""
    found = scrape(stack.core_admin_url)
    return value(found, "interlock_redis_up"), value(found, "interlock_redis_outages_total")


def assert_policy_applies(stack: Stack, mode: str, cause: str) -> None:
    """Five calls while Redis cannot serve: the configured policy, logged and counted."""
    during = [call(stack) for _ in range(5)]
    if mode == "fail_open":
        assert [r.status for r in during] == [200] * 5
        assert all(r.headers["x-ratelimit-limit-requests"] == "10000" for r in during)
    else:
        assert [r.status for r in during] == [503] * 5
        error = during[0].json()["error"]
        assert error["code"] == "state_unavailable" and during[0].headers["retry-after"] == "1"
    stack.wait_for_log(f"redis unreachable ({cause}")
    # fail-closed can only answer 503: out of the balancer's rotation until Redis is back.
    ready = raw.request("GET", f"{stack.core_admin_url}/readyz").status
    assert ready == (200 if mode == "fail_open" else 503)
    assert redis_up(stack) == (0, 1)


def assert_recovers(stack: Stack) -> None:
    assert until_status(stack, 200).status == 200  # recovers by itself, no restart
    assert raw.request("GET", f"{stack.core_admin_url}/readyz").status == 200
    stack.wait_for_log("redis reachable again")
    assert redis_up(stack)[0] == 1


def test_redis_killed_and_restarted(outage: tuple[Stack, RedisServer, str]) -> None:
    stack, redis_server, mode = outage
    assert call(stack).status == 200
    assert redis_up(stack)[0] == 1
    redis_server.stop()
    assert_policy_applies(stack, mode, "")
    redis_server.start()
    assert_recovers(stack)


@pytest.mark.parametrize("mode", MODES)
def test_wrong_password_applies_the_policy_until_fixed(tmp_path: Path, mode: str) -> None:
    redis_server = RedisServer(tmp_path / "redis", requirepass="the-right-one").start()
    stack = gateway(tmp_path, redis_server.url_with("a-wrong-one"), mode)
    try:
        assert_policy_applies(stack, mode, "AuthenticationError")
        assert "a-wrong-one" not in stack.read_logs()
        redis_server.set_password("a-wrong-one")  # the operator fixes it on the server
        assert_recovers(stack)
    finally:
        stack.stop()
        redis_server.stop()


@pytest.mark.parametrize("mode", MODES)
def test_loading_applies_the_policy_until_loaded(tmp_path: Path, mode: str) -> None:
    redis_server = RedisServer(tmp_path / "redis").start()
    redis_server.save_dataset()
    redis_server.stop()
    redis_server.start(loading=True)
    stack = gateway(tmp_path, redis_server.url, mode)
    try:
        assert_policy_applies(stack, mode, "BusyLoadingError")
        redis_server.finish_loading()
        assert_recovers(stack)
    finally:
        stack.stop()
        redis_server.stop()
