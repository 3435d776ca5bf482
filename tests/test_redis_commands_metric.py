"""interlock_redis_commands_total counts the core's round trips to Redis (the capacity plan's
Redis round trips per request are read from it): a plain request makes one (the hop nonce's
SET NX; the tenant limit's take is drawn from a lease: core.limits.leases), plus the background
syncs' few (a lease's take every 32 requests, the settlements' flushes)."""

from __future__ import annotations

from pathlib import Path

from tests.support import raw
from tests.support.prom import scrape, value
from tests.support.redis_server import RedisServer
from tests.support.stack import Stack

BODY = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}
REQUESTS = 40


def test_redis_commands_are_counted_per_round_trip(tmp_path: Path) -> None:
    redis_server = RedisServer(tmp_path / "redis").start()
    overrides = {
        "state": {"redis_url": redis_server.url},
        "limits": {"tiers": {"default": {"rpm": 10_000}}},
    }
    stack = Stack(tmp_path / "stack", overrides).start()
    try:
        assert raw.post(f"{stack.edge_url}/v1/chat/completions", BODY, stack.token()).status == 200
        before = value(scrape(stack.core_admin_url), "interlock_redis_commands_total")
        for _ in range(REQUESTS):
            answer = raw.post(f"{stack.edge_url}/v1/chat/completions", BODY, stack.token())
            assert answer.status == 200
        after = value(scrape(stack.core_admin_url), "interlock_redis_commands_total")
    finally:
        stack.stop()
        redis_server.stop()
    assert before is not None and after is not None
    per_request = (after - before) / REQUESTS
    assert 1 <= per_request < 1.5, per_request
