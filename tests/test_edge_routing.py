"""Which core pool serves a request: routes by model glob and tenant, then the default pool."""

from __future__ import annotations

from pathlib import Path

from edge.routing import PoolRouter
from shared.config import EdgeConfig, RouteConfig
from tests.support import raw
from tests.support.net import free_port
from tests.support.stack import Stack

EDGE = EdgeConfig(
    host="127.0.0.1",
    port=0,
    max_body_bytes=1024,
    pools={"default": ("http://d1", "http://d2"), "premium": ("http://p1",), "eu": ("http://e1",)},
    routes=(
        RouteConfig(models=("claude-*",), tenants=("bigco",), pool="premium"),
        RouteConfig(models=("*",), tenants=("eu-tenant",), pool="eu"),
        RouteConfig(models=("gpt-4o*", "o3"), tenants=(), pool="premium"),
    ),
    default_pool="default",
    core_timeout_s=10,
)


def test_first_matching_route_wins() -> None:
    router = PoolRouter(EDGE)
    assert router.pool_for("claude-sonnet", "bigco") == "premium"
    assert router.pool_for("claude-sonnet", "smallco") == "default"  # tenant-restricted route
    assert router.pool_for("claude-sonnet", "eu-tenant") == "eu"
    assert router.pool_for("gpt-4o-mini", "anyone") == "premium"
    assert (
        router.pool_for("o3", "anyone") == "premium"
        and router.pool_for("o3-mini", "x") == "default"
    )
    assert router.pool_for(None, "bigco") == "default"  # /v1/models has no model


def test_pool_urls_rotate_round_robin() -> None:
    router = PoolRouter(EDGE)
    firsts = [router.urls("default")[0] for _ in range(4)]
    assert firsts == ["http://d1", "http://d2", "http://d1", "http://d2"]
    assert sorted(router.urls("default")) == ["http://d1", "http://d2"]  # every replica, in order
    assert router.urls("premium") == ["http://p1"]


def test_routes_pick_pools_end_to_end(tmp_path: Path) -> None:
    core_port = free_port()
    pools = {
        "default": [f"http://127.0.0.1:{core_port}"],
        "unreachable": [f"http://127.0.0.1:{free_port()}"],
    }
    overrides = {
        "edge": {"pools": pools, "routes": [{"models": ["routed-*"], "pool": "unreachable"}]}
    }
    stack = Stack(tmp_path, overrides, core_port=core_port).start()
    try:
        body = {"messages": [{"role": "user", "content": "hi"}]}
        url = f"{stack.edge_url}/v1/chat/completions"
        assert raw.post(url, {**body, "model": "mock-1"}, stack.token()).status == 200
        routed = raw.post(url, {**body, "model": "routed-x"}, stack.token())
        assert routed.status == 502 and routed.json()["error"]["code"] == "core_unavailable"
    finally:
        stack.stop()
