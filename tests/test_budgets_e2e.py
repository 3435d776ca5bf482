"""Budgets end to end through the real edge and core, with the official SDKs: the block
envelope in both APIs, the budget headers, the downgrade action, and threshold alerts posted
once each to a local webhook (retried after a failure)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import anthropic
import openai
import pytest

from tests.support import raw
from tests.support.budget_core import BUDGET_CORE
from tests.support.fake_server import FakeServer
from tests.support.stack import Stack
from tests.support.webhook_sink import webhook_sink

PRICEY_LIMIT_MICROS = 30_000


@pytest.fixture(scope="module")
def hook() -> Iterator[FakeServer]:
    server = webhook_sink(fail_first=1)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, hook: FakeServer) -> Iterator[Stack]:
    overrides = {
        "models": {
            "pricey": {"provider": "mock", "model": "mock-pricey"},
            "cheap": {"provider": "mock", "model": "mock-cheap"},
            "mock-1": {"provider": "mock", "model": "mock-1"},
            "pressured": {"provider": "mock", "model": "mock-pressured"},
        },
        "routing": {
            "rules": [
                {
                    "id": "relieve",
                    "when": {"model": "pressured", "budget": {"name": "pressure", "above": 50}},
                    "model": "cheap",
                }
            ]
        },
        "budgets": {
            "pricey-daily": {
                "model": "mock-pricey",
                "limit": "0.03",
                "action": "downgrade",
                "downgrade_to": "cheap",
            },
            "closed-tenant": {"tenant": "closed", "limit": "0.000001", "period": "month"},
            "pressure": {
                "model": "mock-pressured",
                "limit": "0.03",
                "action": "warn",
            },
            "rolling-hour": {
                "tenant": "rolling",
                "limit": "0.000001",
                "period": "rolling",
                "window": "1h",
            },
            "watched": {
                "tenant": "watched",
                "limit": "0.01",
                "action": "warn",
                "alerts": [50, 100],
                "webhook": f"{hook.url}/hook",
            },
        },
    }
    started = Stack(tmp_path_factory.mktemp("budgets"), overrides).start(core_app=BUDGET_CORE)
    yield started
    started.stop()


def openai_for(stack: Stack, tenant: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{stack.edge_url}/v1", api_key=stack.token(tenant), max_retries=0
    )


def ask(client: openai.OpenAI, model: str) -> openai.APIResponse[object]:
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "price me"}], max_tokens=8
    )


def test_block_is_a_429_in_the_openai_envelope(stack: Stack) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        ask(openai_for(stack, "closed"), "mock-1")
    error = caught.value
    assert error.code == "budget_exceeded"
    assert "closed-tenant" in error.message and "resets at" in error.message
    assert int(error.response.headers["retry-after"]) >= 1
    assert error.response.headers["x-interlock-budget"] == "closed-tenant"
    assert error.response.headers["x-interlock-budget-remaining"] == "0.000001"


def test_a_rolling_budget_says_when_room_frees(stack: Stack) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        ask(openai_for(stack, "rolling"), "mock-1")
    error = caught.value
    assert error.code == "budget_exceeded"
    assert "rolling-hour" in error.message and "rolling 1h window" in error.message
    # Spend ages out a slot (a 60th of the window, here a minute) at a time.
    assert 1 <= int(error.response.headers["retry-after"]) <= 60
    assert 1 <= int(error.response.headers["x-interlock-budget-reset"]) <= 60


def test_block_is_a_429_in_the_anthropic_envelope(stack: Stack) -> None:
    client = anthropic.Anthropic(
        base_url=stack.edge_url, api_key=stack.token("closed"), max_retries=0
    )
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(
            model="mock-1", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "rate_limit_error"
    assert "closed-tenant" in body["error"]["message"]
    assert caught.value.response.headers["retry-after"]


def test_downgrade_switches_to_the_cheap_model_for_the_rest_of_the_period(stack: Stack) -> None:
    client = openai_for(stack, "acme")
    served = []
    for _ in range(30):
        raw = ask(client, "pricey")
        served.append(
            (raw.headers["x-interlock-model"], raw.headers.get("x-interlock-downgraded-from"))
        )
        if raw.headers["x-interlock-model"] == "mock-pricey":
            assert raw.headers["x-interlock-budget"] == "pricey-daily"
            remaining = raw.headers["x-interlock-budget-remaining"]
            assert 0 <= float(remaining) * 1_000_000 < PRICEY_LIMIT_MICROS
            assert 0 < int(raw.headers["x-interlock-budget-reset"]) <= 86_400
    first_cheap = served.index(("mock-cheap", "pricey"))
    assert first_cheap >= 3  # the expensive model served while the budget had room
    assert all(s == ("mock-pricey", None) for s in served[:first_cheap])
    assert all(s == ("mock-cheap", "pricey") for s in served[first_cheap:])
    # The ledger shows both: the requests the expensive model served, then the cheap one's.
    assert served_in_ledger(stack, "acme", len(served)) == {
        "mock-pricey": first_cheap,
        "mock-cheap": len(served) - first_cheap,
    }


def test_a_rule_on_budget_pressure_moves_traffic_once_the_budget_is_half_used(
    stack: Stack,
) -> None:
    client = openai_for(stack, "acme")
    served = []
    for _ in range(30):
        raw_answer = ask(client, "pressured")
        served.append(
            (raw_answer.headers["x-interlock-model"], raw_answer.headers["x-interlock-route"])
        )
    moved = served.index(("mock-cheap", "relieve"))
    # The pricey model served until the budget was past half (each request costs about 1/8
    # of it: see the downgrade test), then the rule sent every request to the cheap one.
    assert 2 <= moved <= 8
    assert all(s == ("mock-pressured", "default") for s in served[:moved])
    assert all(s == ("mock-cheap", "relieve") for s in served[moved:])


def served_in_ledger(stack: Stack, tenant: str, expected: int) -> dict[str, int]:
    """Requests per served model in the tenant's usage (GET /v1/usage), once all are written
    (the ledger writes in batches, off the request path)."""
    deadline = time.monotonic() + 10
    while True:
        answer = raw.request(
            "GET",
            f"{stack.edge_url}/v1/usage?group_by=served_model",
            headers={"authorization": f"Bearer {stack.token(tenant)}"},
        )
        rows = {row["served_model"]: row["requests"] for row in answer.json()["data"]}
        if sum(rows.values()) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_alerts_fire_once_per_threshold_with_retries(stack: Stack, hook: FakeServer) -> None:
    client = openai_for(stack, "watched")
    for _ in range(60):  # a warn budget serves past its limit
        assert ask(client, "pricey").parse().choices
        if len({r.json["threshold_percent"] for r in hook.received}) == 2:
            break
    deadline = time.monotonic() + 10
    while len({r.json["threshold_percent"] for r in hook.received}) < 2:
        assert time.monotonic() < deadline, hook.received
        time.sleep(0.05)
    for _ in range(5):
        ask(client, "pricey")
    time.sleep(1.5)  # time for any duplicate (and the first alert's retry) to arrive
    posted = [(r.json["budget"], r.json["threshold_percent"]) for r in hook.received]
    # The first POST was refused (503) and retried: one alert per threshold, plus that retry.
    assert posted == [("watched", 50), ("watched", 50), ("watched", 100)]
    assert "budget watched reached 100%" in stack.read_logs()
