"""core.pipeline.stages, one stage at a time on an Exchange, with the real registry,
Dispatcher and tenant limiter (in-memory store) and a scripted API."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import orjson
import pytest

from core.pipeline import Account, Exchange
from core.pipeline.stages import Admit, Dispatch, Plan, Read, Resolve, Validate
from core.providers.adapters.base import Capabilities, ProviderError, Target
from core.resilience.latency import LatencyTracker
from core.routing.registry import Candidate, Route
from shared.config import ProviderConfig
from shared.errors import GatewayError
from tests.support.pipeline import (
    ESTIMATE,
    FakeApi,
    FakeRequest,
    FakeStep,
    caller,
    core,
    http_request,
)
from tests.support.providers import provider_of


def exchange(spec: FakeApi | None = None, raw: bytes = b"{}", **fields: Any) -> Any:
    x: Exchange[Any, Any, Any] = Exchange(
        spec or FakeApi(), Account(), http_request(), fields.pop("who", caller()), raw
    )
    for name, value in fields.items():
        setattr(x, name, value)
    return x


@pytest.mark.parametrize("raw", [b"[1]", b"not json", b'"text"', b"{" * 10_000])
def test_read_refuses_a_body_that_is_not_a_json_object(raw: bytes) -> None:
    with pytest.raises(GatewayError) as info:
        asyncio.run(Read()(exchange(raw=raw)))
    assert info.value.status == 400


def test_read_then_validate_give_the_apis_request() -> None:
    x = exchange(raw=orjson.dumps({"model": "mock-1", "stream": True}))
    asyncio.run(Read()(x))
    asyncio.run(Validate()(x))
    assert x.request == FakeRequest("mock-1", True)


def test_resolve_checks_the_token_then_the_registry() -> None:
    resolve = Resolve(core().registry)
    x = exchange(request=FakeRequest("default", False))  # an alias of mock-1
    asyncio.run(resolve(x))
    assert x.route.candidates[0].target.model == "mock-1"
    for who, model, status, code in (
        (caller(lambda m: m != "mock-1"), "mock-1", 403, "model_not_allowed"),
        (caller(), "no-such-model", 404, "model_not_found"),
    ):
        with pytest.raises(GatewayError) as info:
            asyncio.run(resolve(exchange(who=who, request=FakeRequest(model, False))))
        assert (info.value.status, info.value.code, info.value.param) == (status, code, "model")


def test_plan_orders_the_route_by_its_strategy_before_the_apis_planner() -> None:
    provider = ProviderConfig("p", "mock", None, (), {}, None, False)
    candidates = tuple(
        Candidate(Target(provider_of(provider), name, None), object(), Capabilities())  # type: ignore[arg-type]
        for name in ("slow", "fast")
    )
    route = Route("m", candidates, True, True, "least_latency", (1.0, 1.0))
    parts = core()
    latency: LatencyTracker = parts.dispatcher.latency
    latency.observe("p/slow", 0.9)
    latency.observe("p/fast", 0.1)
    spec = FakeApi()
    x = exchange(spec, request=FakeRequest("m", False), route=route)
    asyncio.run(Plan(parts.dispatcher)(x))
    assert [c.target.model for c in spec.planned[0].candidates] == ["fast", "slow"]
    assert [step.target.model for step in x.steps] == ["fast", "slow"]


def test_admit_reserves_the_apis_estimate_and_refuses_past_the_limit() -> None:
    admit = Admit(core(tpm=ESTIMATE + 50).limiter)
    x = exchange(request=FakeRequest("mock-1", False), payload={})
    asyncio.run(admit(x))
    assert x.tokens == ESTIMATE
    assert x.admission.headers["x-ratelimit-remaining-tokens"] == "50"
    refused = exchange(request=FakeRequest("mock-1", False), payload={})
    with pytest.raises(GatewayError) as info:
        asyncio.run(admit(refused))
    assert info.value.status == 429 and refused.admission is None


def test_admit_without_limits_still_estimates_for_the_key_pools() -> None:
    x = exchange(request=FakeRequest("mock-1", False), payload={})
    asyncio.run(Admit(None)(x))
    assert x.tokens == ESTIMATE and x.admission.headers == {}


@pytest.mark.parametrize("stream", [False, True])
def test_dispatch_times_the_call_by_the_requests_mode(stream: bool) -> None:
    """A stream gets the first-byte timeout, a complete call the (longer) completion one."""

    async def slow(step: FakeStep, target: Target) -> Any:
        await asyncio.sleep(0.3)
        return "answer"

    parts = core()
    policy = replace(parts.dispatcher.policy, first_byte_timeout_s=0.05)
    parts.dispatcher.policy = policy
    route = parts.registry.resolve("mock-1")
    assert route is not None
    x = exchange(FakeApi(call_with=slow), request=FakeRequest("mock-1", stream), tokens=1)
    x.steps = [FakeStep(route.candidates[0].target)]
    if stream:
        with pytest.raises(ProviderError, match="first-byte") as info:
            asyncio.run(Dispatch(parts.dispatcher)(x))
        assert info.value.status == 504
        return
    asyncio.run(Dispatch(parts.dispatcher)(x))
    assert x.result == "answer"
    assert (x.outcome.target.model, x.outcome.attempts) == ("mock-1", 1)


@pytest.mark.parametrize("free", [False, True])
def test_a_free_apis_tries_reserve_no_budget_and_are_not_latency_samples(free: bool) -> None:
    """A token count (`free` on its spec) is asked of no budget, and its quick answers do not
    pull the target's latency estimate down (the real Dispatcher, the real tracker)."""
    parts = core()
    asked: list[Any] = []
    run = parts.dispatcher.run

    async def recorded(*args: Any, **options: Any) -> Any:
        asked.append(options["budget"])
        options["budget"] = None  # no budgets are configured in this core
        return await run(*args, **options)

    parts.dispatcher.run = recorded  # type: ignore[method-assign]
    parts.dispatcher.budgets = type("On", (), {"enabled": True})()  # type: ignore[assignment]
    spec = FakeApi()
    if free:
        spec.free = True  # type: ignore[attr-defined]
    route = parts.registry.resolve("mock-1")
    assert route is not None
    target = route.candidates[0].target
    x = exchange(spec, request=FakeRequest("mock-1", False), payload={}, tokens=1)
    x.steps = [FakeStep(target)]
    asyncio.run(Dispatch(parts.dispatcher)(x))
    assert x.result is not None
    assert (asked[0] is None) is free
    assert (parts.dispatcher.latency.expected(target.health_label) is None) is free
