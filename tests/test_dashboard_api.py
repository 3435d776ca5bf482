"""The dashboard's API through a real edge and core (tests/support/dashboard_stack.py: a
seeded month of ledger records plus live SDK requests): the page's files through the edge,
who may read which panel, the request log and health figures against the raw ledger rows,
budgets and limits per caller, and bad parameters answered as 4xx naming themselves."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from core.dashboard import live
from core.dashboard.reads import HAS_TRACE_ID, percentile
from core.limits.tenant import Settlements
from core.providers.adapters.base import ProviderError
from core.resilience.circuit import BreakerPolicy
from core.resilience.circuit_board import BreakerBoard
from core.resilience.key_pools import KeyPools, key_id
from core.state.store import MemoryStore
from shared.config import ProviderConfig
from shared.errors import FailureClass
from shared.secret import Secret
from tests.support import raw
from tests.support.dashboard_stack import LIVE, SEEDED, A, B, C, admin_token, dashboard_stack, get
from tests.support.ledger_load import ledger_rows
from tests.support.stack import Stack

DAY = 86400


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from dashboard_stack(tmp_path_factory.mktemp("dashboard-api"))


@pytest.fixture(scope="module")
def operator(stack: Stack) -> str:
    return admin_token(stack)


def rows_of(stack: Stack, tenant: str | None, start: float, end: float) -> list[dict[str, Any]]:
    rows = ledger_rows(stack.config.ledger.url, SEEDED + len(LIVE))
    return [r for r in rows if (tenant is None or r["tenant"] == tenant) and start <= r["ts"] < end]


def test_the_page_and_its_files_come_through_the_edge_with_a_strict_policy(stack: Stack) -> None:
    page = raw.request("GET", f"{stack.edge_url}/dashboard/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert b"uPlot.iife.min.js" in page.body and b"dash-app.js" in page.body
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    assert "http" not in policy  # nothing from another origin: no CDN
    assert page.headers["x-content-type-options"] == "nosniff"
    for name in ("uPlot.iife.min.js", "dash-app.js", "dash.css", "uPlot.LICENSE.txt"):
        found = raw.request("GET", f"{stack.edge_url}/dashboard/{name}")
        assert found.status == 200 and len(found.body) > 100, name
        assert found.body == raw.request("GET", f"{stack.core_url}/dashboard/{name}").body
    assert (
        b"MIT License" in raw.request("GET", f"{stack.edge_url}/dashboard/uPlot.LICENSE.txt").body
    )
    for odd in ("nothing.js", "..%2Finterlock.yaml", "%2e%2e", ".hidden", "a%00b"):
        assert raw.request("GET", f"{stack.edge_url}/dashboard/{odd}").status == 404, odd
        assert raw.request("GET", f"{stack.core_url}/dashboard/{odd}").status == 404, odd
    moved = raw.request("GET", f"{stack.edge_url}/dashboard", headers={"host": "evil.example"})
    assert moved.status == 308 and moved.headers["location"] == "dashboard/"


def test_whoami_tells_the_role_and_needs_a_token(stack: Stack, operator: str) -> None:
    assert get(stack, "/v1/dashboard/whoami", stack.token(A)).json() == {
        "tenant": A,
        "admin": False,
        "ledger": True,
        "trace_ids": HAS_TRACE_ID,
    }
    assert get(stack, "/v1/dashboard/whoami", operator).json()["admin"] is True
    assert get(stack, "/v1/dashboard/whoami", "not-a-token").status == 401
    # The core's own port refuses a call without the edge's hop credential.
    direct = raw.request("GET", f"{stack.core_url}/v1/dashboard/whoami")
    assert direct.status == 401


def test_a_tenant_token_is_refused_the_operator_panel_and_other_tenants(stack: Stack) -> None:
    token = stack.token(B)
    refused = get(stack, "/v1/dashboard/operations", token)
    assert refused.status == 403 and refused.json()["error"]["code"] == "operator_only"
    for panel in ("health", "requests", "budgets"):
        answer = get(stack, f"/v1/dashboard/{panel}", token, tenant=A)
        assert answer.status == 403, panel
        assert answer.json()["error"]["code"] == "cross_tenant_forbidden"


def test_the_request_log_is_the_tenants_own_records_newest_first_metadata_only(
    stack: Stack,
) -> None:
    end = time.time() + 60
    start = end - 31 * DAY
    mine = sorted(rows_of(stack, A, start, end), key=lambda r: -r["ts"])
    token = stack.token(A)
    first = get(stack, "/v1/dashboard/requests", token, start=start, end=end, limit=40).json()
    assert first["has_more"] and len(first["data"]) == 40
    assert [r["request_id"] for r in first["data"]] == [r["request_id"] for r in mine[:40]]
    seen, page = list(first["data"]), first
    while page["has_more"]:  # `before` pages to older records
        before = page["data"][-1]["ts"]
        params = {"start": start, "end": end, "limit": 100, "before": before}
        page = get(stack, "/v1/dashboard/requests", token, **params).json()
        seen += page["data"]
    assert [r["request_id"] for r in seen] == [r["request_id"] for r in mine]
    assert all(r["tenant"] == A for r in seen)
    newest = first["data"][0]
    assert newest["model"] in ("mock-1", "mock-2") and newest["tags"] == {"project": "search"}
    assert set(newest) >= {"latency_ms", "ttft_ms", "outcome", "cost_micros", "provider"}
    assert (newest["images"], newest["audio_ms"], newest["characters"]) == (0, 0, 0)  # chat
    assert ("trace_id" in newest) is HAS_TRACE_ID
    assert b"hello from" not in get(stack, "/v1/dashboard/requests", token, limit=200).body
    # Filters narrow the log to exactly the matching records.
    for name, column, value in (
        ("model", "requested_model", "gpt-x"),
        ("outcome", "outcome", "timeout"),
        ("provider", "provider", "anthropic"),
    ):
        params = {"start": start, "end": end, "limit": 200, name: value}
        body = get(stack, "/v1/dashboard/requests", token, **params).json()
        assert len(body["data"]) == len([r for r in mine if r[column] == value]) > 0, name
        assert {r[name] for r in body["data"]} == {value}
    one = get(stack, "/v1/dashboard/requests", token, request_id=mine[3]["request_id"]).json()
    assert [r["request_id"] for r in one["data"]] == [mine[3]["request_id"]]


def test_health_matches_the_raw_records(stack: Stack, operator: str) -> None:
    end = time.time() + 60
    start = end - 31 * DAY
    for token, tenant in ((stack.token(C), C), (operator, None)):
        rows = rows_of(stack, tenant, start, end)
        body = get(stack, "/v1/dashboard/health", token, start=start, end=end).json()
        assert body["sample"] == len(rows)
        outcomes: dict[str, int] = {}
        for r in rows:
            outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
        assert body["outcomes"] == outcomes
        by_provider = {p["provider"]: p for p in body["providers"]}
        for name in {r["provider"] for r in rows}:
            mine = [r for r in rows if r["provider"] == name]
            latency = sorted(r["latency_ms"] for r in mine)
            ttft = sorted(r["ttft_ms"] for r in mine if r["ttft_ms"] is not None)
            entry = by_provider[name]
            assert entry["requests"] == len(mine)
            assert entry["latency_ms"]["p95"] == percentile(latency, 0.95)
            assert entry["ttft_ms"]["p50"] == percentile(ttft, 0.5)
            failed = [r for r in mine if r["outcome"] not in ("ok", "cache_hit", "coalesced")]
            assert entry["errors"] == len([r for r in failed if r["outcome"] != "cancelled"])
        hits = [r for r in rows if r["saved_input"]]
        assert body["saved"]["input_tokens"] == sum(r["saved_input"] for r in hits)
    only_openai = get(stack, "/v1/dashboard/health", operator, provider="openai").json()
    assert [p["provider"] for p in only_openai["providers"]] in ([], ["openai"])


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([1.0], 0.95) == 1.0
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0 and percentile(values, 0.95) == 95.0


def test_budgets_show_only_the_callers_own_and_its_limits(stack: Stack, operator: str) -> None:
    mine = get(stack, "/v1/dashboard/budgets", stack.token(A)).json()
    assert [b["name"] for b in mine["budgets"]] == ["acme-daily"]
    budget = mine["budgets"][0]
    assert budget["limit"] == "5.000000" and budget["period"] == "day"
    assert budget["resets_at"].endswith("T00:00:00Z")
    # acme's live requests were reserved and settled under it: its spend is known here.
    assert budget["used_share"] is not None and budget["spent_micros"] > 0
    assert mine["limits"] == {"tier": "free", "rpm": 600, "tpm": 100000, "burst": 0.1}
    assert [
        b["name"] for b in get(stack, "/v1/dashboard/budgets", stack.token(C)).json()["budgets"]
    ] == []
    every = get(stack, "/v1/dashboard/budgets", operator).json()
    assert sorted(b["name"] for b in every["budgets"]) == ["acme-daily", "beta-monthly", "everyone"]
    assert "limits" not in every
    one = get(stack, "/v1/dashboard/budgets", operator, tenant=B).json()
    assert [b["name"] for b in one["budgets"]] == ["beta-monthly"]


def test_operations_for_an_operator(stack: Stack, operator: str) -> None:
    ops = get(stack, "/v1/dashboard/operations", operator).json()
    targets = {c["target"]: c["state"] for c in ops["circuits"]}
    assert targets["mock/mock-1"] == "closed"
    assert [p["provider"] for p in ops["key_pools"]] == ["mock"]
    assert set(ops) == {"circuits", "key_pools", "rate_limited", "failovers", "retries"}


@pytest.mark.parametrize(
    ("path", "params", "status", "param"),
    [
        ("health", {"bogus": "1"}, 400, "bogus"),
        ("health", {"start": "yesterday"}, 400, "start"),
        ("health", {"start": "200", "end": "100"}, 400, "end"),
        ("health", {"start": "0", "end": str(93 * DAY)}, 400, "end"),
        ("requests", {"start": str(DAY), "end": str(94 * DAY)}, 400, "end"),
        ("requests", {"limit": "0"}, 400, "limit"),
        ("requests", {"limit": "²"}, 400, "limit"),
        ("requests", {"limit": "201"}, 400, "limit"),
        ("requests", {"before": "nan"}, 400, "before"),
        ("requests", {"model": "x" * 600}, 400, "model"),
        ("requests", {"outcome": "a\x00b"}, 400, "outcome"),
        ("whoami", {"tenant": "acme"}, 400, "tenant"),
        ("operations", {"x": "1"}, 400, "x"),
    ],
)
def test_bad_parameters_are_4xx_naming_themselves(
    stack: Stack, operator: str, path: str, params: dict[str, str], status: int, param: str
) -> None:
    answer = get(stack, f"/v1/dashboard/{path}", operator, **params)
    assert answer.status == status, answer.body
    assert answer.json()["error"]["param"] == param


def test_odd_requests_never_make_a_5xx(stack: Stack, operator: str) -> None:
    assert get(stack, "/v1/dashboard/nothing", operator).status == 404
    assert get(stack, "/v1/dashboard/requests?limit=1&limit=2", operator).status == 400
    for query in ("start=1e308", "end=-1", "before=" + "9" * 40, "request_id=%ff%fe", "=x"):
        url = f"{stack.edge_url}/v1/dashboard/requests?{query}"
        answer = raw.request("GET", url, headers={"authorization": f"Bearer {operator}"})
        assert answer.status < 500, (query, answer.body)


def test_the_operations_panel_names_resting_keys_by_id_only() -> None:
    keys = (Secret("sk-first-key"), Secret("sk-second-key"))
    pools = KeyPools(
        {"p": ProviderConfig("p", "stub", None, keys, {}, None, False, {})},
        MemoryStore(),
        Settlements(MemoryStore()),
    )
    failure = ProviderError(429, "slow down", FailureClass.RATE_LIMIT, retry_after_s=30)
    pools.pool("p").rest(keys[1], failure, time.monotonic())
    board = BreakerBoard(BreakerPolicy(0.5, 5, 10, 5), MemoryStore())
    state = live.operations(board, pools, ["p"])
    [pool] = state["key_pools"]
    assert pool["keys"] == 2 and [r["key_id"] for r in pool["resting"]] == [key_id(keys[1])]
    assert 29 <= pool["resting"][0]["for_s"] <= 30
    assert "sk-second-key" not in str(state)
