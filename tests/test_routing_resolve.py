"""The resolve stage with routing rules, in process: what each action leaves on the exchange
(the latency ceiling the strategies read, the capped payload, the route), budget pressure read
through a fake `BudgetGauge`, and the field a refusal names per API."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import Request

from core.pipeline import Account, Exchange
from core.pipeline.stages import Resolve
from core.routing.policy.rules import Policy, build_policy
from core.routing.registry import ModelRegistry
from shared.config import parse_config
from shared.errors import GatewayError
from tests.support.pipeline import FakeApi, FakeRequest, caller
from tests.support.providers import providers_of

RULES: list[dict[str, Any]] = [
    {"id": "pressure", "when": {"budget": {"name": "team-a", "above": 80}}, "model": "small"},
    {"id": "huge", "when": {"prompt_tokens": {"gt": 1000}}, "refuse": "too long"},
    {"id": "realtime", "when": {"header.x-priority": "realtime"}, "latency_ceiling_ms": 200},
    {"id": "capped", "when": {"tenant": "capped"}, "cap": {"max_tokens": 10}},
    {"id": "fast", "when": {"tier": "paid"}, "route": "fast", "latency_ceiling_ms": 150},
]


class Gauge:
    def __init__(self, share: float | None) -> None:
        self.share = share

    def used_share(self, name: str) -> float | None:
        return self.share if name == "team-a" else None


class InputApi(FakeApi):
    """Its estimate stands for an embeddings request's input tokens: what the policy reads
    as `prompt_tokens` for embeddings."""

    def prompt(self, request: FakeRequest) -> int:
        return 5000


def parts() -> tuple[ModelRegistry, Policy]:
    raw = {
        "providers": {"mock": {"kind": "mock"}},
        "models": {"m": {"provider": "mock"}, "small": {"provider": "mock"}},
        "budgets": {"team-a": {"limit": "5.00"}},
        "routing": {
            "headers": ["x-priority"],
            "routes": {
                "fast": {"targets": [{"provider": "mock", "model": "f"}], "strategy": "weighted"}
            },
            "rules": RULES,
        },
    }
    config = parse_config(raw, "test", {})
    registry = ModelRegistry(config, providers_of(config))
    policy = build_policy(config.routing, registry.named, lambda m: registry.resolve(m) is not None)
    return registry, policy


def exchange(
    payload: dict[str, Any],
    path: str = "/v1/chat/completions",
    headers: dict[str, str] | None = None,
    spec: FakeApi | None = None,
    **who: Any,
) -> Any:
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(k.encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    base = caller()
    person = type(base)(who.get("tenant", "acme"), who.get("tier", "free"), "req_1", base.allows)
    spec = spec or FakeApi()
    x: Exchange[Any, Any, Any] = Exchange(spec, Account(), Request(scope), person, b"{}")  # type: ignore[arg-type]
    x.payload = payload
    x.request = FakeRequest(payload["model"], False)
    return x


def resolve(x: Any, gauge: Gauge | None = None) -> Any:
    registry, policy = parts()
    if gauge is not None:
        policy.attach(gauge)
    asyncio.run(Resolve(registry, policy)(x))
    return x


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}


def test_no_rule_matched_is_the_models_own_route() -> None:
    x = resolve(exchange(chat()))
    assert (x.rule, x.route.name, x.latency_ceiling_s) == ("default", "m", None)
    assert x.route_headers() == {"x-interlock-route": "default", "x-interlock-strategy": "fallback"}


def test_a_latency_ceiling_is_left_for_the_strategy() -> None:
    x = resolve(exchange(chat(), headers={"x-priority": "realtime"}))
    assert (x.rule, x.route.name, x.latency_ceiling_s) == ("realtime", "m", 0.2)
    x = resolve(exchange(chat(), tier="paid"))  # a named route with its own ceiling
    assert (x.rule, x.route.name, x.latency_ceiling_s) == ("fast", "fast", 0.15)
    assert x.route_headers()["x-interlock-strategy"] == "weighted"


@pytest.mark.parametrize(
    ("share", "rule"), [(0.9, "pressure"), (0.5, "default"), (None, "default")]
)
def test_budget_pressure_through_the_gauge(share: float | None, rule: str) -> None:
    x = resolve(exchange(chat()), Gauge(share))
    assert x.rule == rule
    assert x.route.name == ("small" if rule == "pressure" else "m")


def test_budget_conditions_never_match_without_a_gauge() -> None:
    assert resolve(exchange(chat())).rule == "default"


@pytest.mark.parametrize(
    ("given", "after"),
    [
        ({}, {"max_tokens": 10}),
        ({"max_tokens": 50}, {"max_tokens": 10}),
        ({"max_tokens": 5}, {"max_tokens": 5}),
        ({"max_completion_tokens": 99}, {"max_completion_tokens": 10}),
    ],
)
def test_cap_changes_the_payload_once_before_planning(
    given: dict[str, int], after: dict[str, int]
) -> None:
    x = resolve(exchange(chat(**given), tenant="capped"))
    assert x.rule == "capped" and x.route.name == "m"
    assert {k: v for k, v in x.payload.items() if "max" in k} == after


def test_cap_leaves_embeddings_alone() -> None:
    payload = {"model": "m", "input": "hello"}
    x = resolve(exchange(dict(payload), "/v1/embeddings", tenant="capped"))
    assert x.rule == "capped" and x.payload == payload


@pytest.mark.parametrize(
    ("path", "payload", "param"),
    [
        (
            "/v1/chat/completions",
            chat(messages=[{"role": "user", "content": "x" * 8000}]),
            "messages",
        ),
        ("/v1/embeddings", {"model": "m", "input": "x" * 8000}, "input"),
    ],
)
def test_a_refusal_names_the_field_its_rule_reads(path: str, payload: Any, param: str) -> None:
    with pytest.raises(GatewayError) as refused:
        resolve(exchange(payload, path, spec=InputApi()))
    error = refused.value
    assert (error.status, error.code, error.param, error.message) == (
        403,
        "policy_refused",
        param,
        "too long",
    )


def test_the_token_is_checked_before_any_rule() -> None:
    registry, policy = parts()
    x = exchange(chat(), tier="paid")
    x.caller = type(x.caller)("acme", "paid", "req_1", lambda model: False)
    with pytest.raises(GatewayError) as info:
        asyncio.run(Resolve(registry, policy)(x))
    assert info.value.code == "model_not_allowed"
    assert x.route_headers() == {}  # nothing decided: no route headers
