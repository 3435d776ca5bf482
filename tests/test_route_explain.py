"""Route explanation in process (core.pipeline.explain, core.api.route_explain): the matched
rule, every candidate's numbers, and each skip reason (capability, unpriced, budget, circuit
open, latency ceiling) read from the core's own objects, with nothing reserved or claimed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.api.chat import ChatApi
from core.api.embeddings import EmbeddingsApi
from core.api.messages.handler import MessagesApi
from core.api.messages.passthrough import Passthrough
from core.api.route_explain import parse_ask
from core.app import CoreState
from core.budgets.enforce import dollars
from core.budgets.periods import PeriodClock
from core.pipeline.explain import Explanation, RouteExplainer
from core.providers.adapters.base import ProviderError, Target
from shared.config import parse_config
from shared.errors import FailureClass, GatewayError
from tests.support.flat_pricing import FlatPricing
from tests.support.fuzz import mutated

DOWN = ProviderError(503, "down", FailureClass.TRANSIENT, upstream_status=503)
HI: Any = [{"role": "user", "content": "hi"}]


def target(provider: str, model: str) -> dict[str, str]:
    return {"provider": provider, "model": model}


RAW: dict[str, Any] = {
    "hop": {"secret": "explain-test-secret-0123456789abcdef"},
    "providers": {
        "mock": {"kind": "mock", "allow_any_model": True},
        "claude": {"kind": "anthropic", "base_url": "http://127.0.0.1:9", "api_key": "sk-x"},
    },
    "models": {"mock-1": {"provider": "mock", "model": "mock-1"}},
    "budgets": {"pricey-cap": {"model": "mock-pricey", "limit": "0.01", "action": "block"}},
    "routing": {
        "headers": ["x-policy"],
        "routes": {
            "mixed": {
                "strategy": "cost",
                "targets": [
                    target("claude", "claude-test"),
                    target("mock", "mock-pricey"),
                    target("mock", "mock-cheap"),
                    target("mock", "mock-1"),
                ],
            },
        },
        "rules": [
            {"id": "no", "when": {"header.x-policy": "no"}, "refuse": "not here"},
            {"id": "fast", "when": {"tier": "paid"}, "route": "mixed", "latency_ceiling_ms": 500},
            {"id": "mixed", "when": {"header.x-policy": "mixed"}, "route": "mixed"},
        ],
    },
}


@pytest.fixture
def state() -> CoreState:
    return CoreState(parse_config(RAW, "test", {}), FlatPricing())


def explainer(state: CoreState) -> RouteExplainer:
    specs: dict[str, Any] = {
        "chat": ChatApi(state.images.inline),
        "embeddings": EmbeddingsApi(),
        "messages": MessagesApi(Passthrough(1 << 20), state.images.inline),
    }
    return RouteExplainer(specs, state.registry, state.policy, state.dispatcher, state.pricing)


def run(state: CoreState, body: dict[str, Any]) -> Explanation:
    return asyncio.run(explainer(state).explain(parse_ask(orjson.dumps(body))))


def ask(request: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"tenant": "acme", "headers": {"x-policy": "mixed"}, "request": request, **fields}


def skips(explanation: Explanation) -> dict[str, str | None]:
    return {c.view.model: c.skip for c in explanation.candidates}


def test_the_matched_rule_and_every_candidate_with_its_numbers(state: CoreState) -> None:
    state.dispatcher.latency.observe("mock/mock-1", 0.25)
    found = run(state, ask({"model": "mock-1", "messages": HI, "max_tokens": 10}))
    assert (found.rule, found.route, found.strategy) == ("mixed", "mixed", "cost")
    assert skips(found) == dict.fromkeys(["claude-test", "mock-pricey", "mock-cheap", "mock-1"])
    body = found.to_json()
    rows = {c["model"]: c for c in body["candidates"]}
    # FlatPricing: mock-1 is 1 micro per input token, 4 per output token; 10 output tokens.
    assert rows["mock-1"]["cost_usd"] == dollars(found.input_tokens * 1 + 10 * 4)
    assert rows["mock-pricey"]["cost_usd"] == dollars(found.input_tokens * 100 + 10 * 400)
    assert rows["mock-1"]["latency_ms"] == 250.0
    assert rows["mock-cheap"]["latency_ms"] is None
    assert body["estimate"]["max_output_tokens"] == 10
    # The cost strategy's order (FlatPricing: claude-test at the default 1/1 is cheapest here).
    ranks = {model: row["order"] for model, row in rows.items()}
    assert ranks == {"claude-test": 1, "mock-1": 2, "mock-cheap": 3, "mock-pricey": 4}


def test_no_rule_is_the_default_route(state: CoreState) -> None:
    found = run(state, {"tenant": "acme", "request": {"model": "mock-1", "messages": HI}})
    assert (found.rule, found.route, found.strategy) == ("default", "mock-1", "fallback")
    assert [c.view.model for c in found.candidates] == ["mock-1"]


def test_a_refusing_rule_is_reported_with_its_message(state: CoreState) -> None:
    found = run(state, ask({"model": "mock-1", "messages": HI}, headers={"x-policy": "no"}))
    assert (found.rule, found.refused, found.candidates) == ("no", "not here", ())


def test_capability_skip_names_what_the_target_cannot_serve(state: CoreState) -> None:
    request = {"model": "mock-1", "messages": HI, "response_format": {"type": "json_object"}}
    found = run(state, ask(request))
    claude = found.candidates[0]
    assert claude.skip == "capability"
    assert claude.why is not None and "response_format" in claude.why
    assert claude.rank is None  # never tried
    # Uncapped output: mock-cheap (64 output tokens at most) is cheaper than mock-1 (4096).
    assert [c.rank for c in found.candidates[1:]] == [3, 1, 2]
    assert all(c.skip is None for c in found.candidates[1:])


def test_budget_skip_when_a_block_budget_has_no_room(state: CoreState) -> None:
    request = {"model": "mock-1", "messages": HI, "max_tokens": 10}
    assert skips(run(state, ask(request)))["mock-pricey"] is None  # level unknown: not judged
    budget = next(b for b in state.config.budgets if b.name == "pricey-cap")
    window = PeriodClock(budget).at(time.time())
    state.budget_settler.levels.saw(budget, window, budget.limit_micros - 100)
    found = run(state, ask(request))
    pricey = next(c for c in found.candidates if c.view.model == "mock-pricey")
    assert pricey.skip == "budget"
    assert pricey.why is not None and "pricey-cap" in pricey.why
    assert skips(found)["mock-cheap"] is None  # the budget is scoped to mock-pricey


def test_circuit_open_skip(state: CoreState) -> None:
    for _ in range(50):
        state.breakers.record("mock/mock-cheap", DOWN)
    assert state.breakers.retry_after("mock/mock-cheap") > 0
    found = run(state, ask({"model": "mock-1", "messages": HI}))
    assert skips(found)["mock-cheap"] == "circuit_open"


def test_ceiling_skip_from_the_rules_latency_ceiling(state: CoreState) -> None:
    latency = state.dispatcher.latency
    latency.observe("mock/mock-1", 0.1)
    latency.observe("mock/mock-cheap", 2.0)
    found = run(state, ask({"model": "mock-1", "messages": HI}, tier="paid", headers={}))
    assert (found.rule, found.ceiling_s) == ("fast", 0.5)
    assert skips(found)["mock-cheap"] == "ceiling"
    assert skips(found)["mock-1"] is None
    last = max(c.rank or 0 for c in found.candidates)
    assert next(c.rank for c in found.candidates if c.view.model == "mock-cheap") == last


def test_explaining_reserves_and_claims_nothing(state: CoreState) -> None:
    latency = state.dispatcher.latency
    before = (len(latency), len(state.breakers))
    for _ in range(5):
        run(state, ask({"model": "mock-1", "messages": HI}))
    assert (len(latency), len(state.breakers)) == before
    assert state.budget_settler.levels.used_share("pricey-cap") is None


def test_embeddings_and_messages_are_explained_through_their_own_validators(
    state: CoreState,
) -> None:
    found = run(state, ask({"model": "mock-1", "input": "hello"}, api="embeddings"))
    assert found.route == "mixed" and found.input_tokens > 0
    found = run(state, ask({"model": "mock-1", "messages": HI, "max_tokens": 5}, api="messages"))
    assert found.route == "mixed" and found.max_output_tokens == 5


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"[]", "body"),
        (b"{", "body"),
        (b'{"request": {}}', "tenant"),
        (b'{"tenant": "a"}', "request"),
        (b'{"tenant": "a", "request": [], "api": "chat"}', "request"),
        (b'{"tenant": "a", "request": {}, "api": "speech"}', "api"),
        (b'{"tenant": "a", "request": {}, "extra": 1}', "extra"),
        (b'{"tenant": "a", "request": {}, "headers": {"x": 1}}', "headers.x"),
        (b'{"tenant": "a", "request": {}, "tags": {"BAD KEY": "v"}}', "tags"),
        (b'{"tenant": "a", "request": {}, "tier": 3}', "tier"),
    ],
)
def test_bad_explain_input_is_a_400_naming_the_field(body: bytes, param: str) -> None:
    with pytest.raises(GatewayError) as caught:
        parse_ask(body)
    assert (caught.value.status, caught.value.param) == (400, param)


class Refusing(FlatPricing):
    """Refuses mock-pricey as unpriced (`prices.unpriced: refuse`)."""

    def refuses(self, target: Target) -> bool:
        return target.model == "mock-pricey"


def test_unpriced_skip_when_the_operator_refuses_unpriced_models() -> None:
    state = CoreState(parse_config(RAW, "test", {}), Refusing())
    found = run(state, ask({"model": "mock-1", "messages": HI}))
    assert skips(found)["mock-pricey"] == "unpriced"
    assert next(c.rank for c in found.candidates if c.view.model == "mock-pricey") is None


SEEDS: list[dict[str, Any]] = [
    ask({"model": "mock-1", "messages": HI, "max_tokens": 10, "tools": []}),
    ask({"model": "mock-1", "input": ["a", "b"]}, api="embeddings"),
    ask({"model": "mock-1", "messages": HI, "max_tokens": 5}, api="messages", tier="paid"),
    {"tenant": "t", "tags": {"team": "a"}, "request": {"model": "mock-1", "messages": HI}},
]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_no_explain_input_is_a_5xx(data: st.DataObject) -> None:
    """Mutated explain bodies (tests/support/fuzz.py): an explanation or a 4xx naming a field;
    no other exception leaves (the endpoint would answer it with a 500)."""
    state = _FUZZ_STATE
    body = data.draw(mutated(SEEDS), label="body")
    try:
        asyncio.run(explainer(state).explain(parse_ask(orjson.dumps(body))))
    except GatewayError as error:
        assert 400 <= error.status < 500 or error.code == "policy_route", error.message


_FUZZ_STATE = CoreState(parse_config(RAW, "test", {}), FlatPricing())
