"""Ordering by strategy (core.routing.ordering) is honoured on every API: chat, messages and
embeddings, through the real edge and core with the official SDKs, observed in the
x-interlock-model header of each answer."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.providers.adapters.base import Capabilities, Target
from core.resilience.latency import LatencyTracker
from core.routing.ordering import order
from core.routing.registry import Candidate, Route
from core.routing.signals import Signals
from shared.config import ProviderConfig
from tests.support.providers import provider_of
from tests.support.sdk import anthropic_client, client
from tests.support.stack import Stack

HEAVY, LIGHT = 1_000_000.0, 0.000_001  # the light target is first once in 10^12 draws


def _route(strategy: str, weights: tuple[float, ...]) -> Route:
    provider = ProviderConfig("p", "mock", None, (), {}, None, False)
    candidates = tuple(
        Candidate(Target(provider_of(provider), name, None), object(), Capabilities())  # type: ignore[arg-type]
        for name in ("a", "b", "c")
    )
    return Route("m", candidates, True, True, strategy, weights)


def test_fallback_keeps_the_configured_order() -> None:
    route = _route("fallback", (1.0, 5.0, 9.0))
    assert order(route, Signals(LatencyTracker()), random.Random(1)) is route


def test_weighted_draws_heavier_targets_first_and_keeps_weights_aligned() -> None:
    route = _route("weighted", (8.0, 1.0, 1.0))
    rng, latency = random.Random(3), Signals(LatencyTracker())
    firsts: Counter[str] = Counter()
    for _ in range(2000):
        ordered = order(route, latency, rng)
        models = [c.target.model for c in ordered.candidates]
        weight_of = dict(zip(models, ordered.weights, strict=True))
        assert sorted(models) == ["a", "b", "c"]
        assert weight_of == {"a": 8.0, "b": 1.0, "c": 1.0}
        firsts[ordered.candidates[0].target.model] += 1
    assert firsts["a"] > 1400 and firsts["b"] > 100 and firsts["c"] > 100


def test_least_latency_puts_the_fastest_observed_first_and_unseen_ones_before_it() -> None:
    latency = LatencyTracker()
    for label, seconds in (("p/a", 0.9), ("p/c", 0.5)):
        latency.observe(label, seconds)
    ordered = order(_route("least_latency", (1.0, 1.0, 1.0)), Signals(latency), random.Random(1))
    assert [c.target.model for c in ordered.candidates] == ["b", "c", "a"]


# --- through the real stack ----------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    def target(provider: str, model: str, weight: float = 1.0) -> dict[str, object]:
        return {"provider": provider, "model": model, "weight": weight}

    overrides = {
        "providers": {
            "mock": {"kind": "mock", "allow_any_model": True},
            "slowmock": {"kind": "mock", "options": {"delay_ms": 300}},
        },
        "models": {
            "mock-1": {"provider": "mock", "model": "mock-1"},
            "weighted": {
                "strategy": "weighted",
                "targets": [target("mock", "light", LIGHT), target("mock", "heavy", HEAVY)],
            },
            "fastest": {
                "strategy": "least_latency",
                "targets": [target("slowmock", "slow"), target("mock", "quick")],
            },
            "cheapest": {
                "strategy": "cost",
                "targets": [target("mock", "dear"), target("mock", "cheap")],
            },
        },
        "prices": {
            "models": {
                "mock/dear": {"input": "5.00", "output": "15.00"},
                "mock/cheap": {"input": "0.10", "output": "0.40"},
            }
        },
    }
    running = Stack(Path(tmp_path_factory.mktemp("ordering")), overrides).start()
    yield running
    running.stop()


def _chat(stack: Stack, model: str) -> str:
    response = client(stack).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hi"}]
    )
    return response.headers["x-interlock-model"]


def _messages(stack: Stack, model: str) -> str:
    response = anthropic_client(stack).messages.with_raw_response.create(
        model=model, max_tokens=16, messages=[{"role": "user", "content": "hi"}]
    )
    return response.headers["x-interlock-model"]


def _embeddings(stack: Stack, model: str) -> str:
    response = client(stack).embeddings.with_raw_response.create(model=model, input="hi")
    return response.headers["x-interlock-model"]


API = [_chat, _messages, _embeddings]


@pytest.mark.parametrize("call", API, ids=["chat", "messages", "embeddings"])
def test_weighted_strategy_is_honoured(stack: Stack, call: Callable[[Stack, str], str]) -> None:
    assert [call(stack, "weighted") for _ in range(3)] == ["heavy"] * 3


@pytest.mark.parametrize("call", API, ids=["chat", "messages", "embeddings"])
def test_cost_strategy_is_honoured(stack: Stack, call: Callable[[Stack, str], str]) -> None:
    assert [call(stack, "cheapest") for _ in range(3)] == ["cheap"] * 3


def test_least_latency_strategy_is_honoured_on_every_api(stack: Stack) -> None:
    # Unseen targets count as fastest: the first two chats explore both (slow answers in
    # 300 ms, quick at once); from then on every API goes to the quick one.
    assert [_chat(stack, "fastest") for _ in range(2)] == ["slow", "quick"]
    for call in API:
        assert [call(stack, "fastest") for _ in range(2)] == ["quick", "quick"], call.__name__
