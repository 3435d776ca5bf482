"""Capability-aware planning: skip incapable targets; strict names a param, lenient drops it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from core.providers.adapters.base import JSON, Capabilities, Target
from core.routing.planning import plan_chat as plan
from core.routing.registry import Candidate, ModelRegistry, Route
from shared.config import ProviderConfig
from shared.errors import GatewayError
from tests.support.providers import provider_of


class StubUpstream:
    def __init__(self, caps: Capabilities) -> None:
        self.caps = caps

    def capabilities(self, target: Target) -> Capabilities:
        return self.caps

    async def complete(self, canonical: JSON, target: Target) -> JSON:
        return {}

    async def stream(self, canonical: JSON, target: Target) -> AsyncIterator[JSON]:
        yield {}


def candidate(name: str, caps: Capabilities) -> Candidate:
    provider = ProviderConfig(name, "stub", None, (), {}, None, False)
    return Candidate(Target(provider_of(provider), name, None), StubUpstream(caps), caps)


def route(*candidates: Candidate, strict: bool = True) -> Route:
    return ModelRegistry._route("m", candidates, strict)


BASIC = Capabilities(params=frozenset({"temperature", "max_tokens"}))
FULL = Capabilities()
TEXT_ONLY = Capabilities(vision=False, tools=False)
MESSAGES = [{"role": "user", "content": "hi"}]


def test_unrestricted_route_skips_planning() -> None:
    only = route(candidate("a", FULL))
    assert only.unrestricted
    payload = {"model": "m", "messages": MESSAGES, "seed": 1}
    [attempt] = plan(only, payload)
    assert attempt.payload is payload and attempt.dropped == ()


def test_strict_names_the_unsupported_param() -> None:
    with pytest.raises(GatewayError) as info:
        plan(route(candidate("a", BASIC)), {"model": "m", "messages": MESSAGES, "seed": 7})
    assert info.value.status == 400 and info.value.param == "seed"
    assert info.value.code == "unsupported_parameter"


def test_strict_fails_over_to_a_target_that_can_honour_it() -> None:
    attempts = plan(
        route(candidate("a", BASIC), candidate("b", FULL)),
        {"model": "m", "messages": MESSAGES, "seed": 7},
    )
    assert [a.target.model for a in attempts] == ["b"]


def test_lenient_drops_and_reports() -> None:
    payload = {"model": "m", "messages": MESSAGES, "seed": 7, "temperature": 0.2}
    [attempt] = plan(route(candidate("a", BASIC), strict=False), payload)
    assert attempt.dropped == ("seed",)
    assert "seed" not in attempt.payload and attempt.payload["temperature"] == 0.2
    assert "seed" in payload  # the original is untouched for other targets


def test_features_skip_incapable_targets() -> None:
    image = [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}],
        }
    ]
    r = route(candidate("text", TEXT_ONLY), candidate("vision", FULL))
    assert [a.target.model for a in plan(r, {"model": "m", "messages": image})] == ["vision"]
    assert [
        a.target.model for a in plan(r, {"model": "m", "messages": MESSAGES, "tools": [{}]})
    ] == ["vision"]
    assert [a.target.model for a in plan(r, {"model": "m", "messages": MESSAGES})] == [
        "text",
        "vision",
    ]
    with pytest.raises(GatewayError) as info:
        plan(route(candidate("text", TEXT_ONLY)), {"model": "m", "messages": image})
    assert info.value.param == "messages"


def test_n_above_a_targets_limit_skips_it() -> None:
    single = Capabilities(max_n=1)
    r = route(candidate("single", single), candidate("multi", FULL))
    assert not r.unrestricted
    assert [a.target.model for a in plan(r, {"model": "m", "messages": MESSAGES, "n": 3})] == [
        "multi"
    ]
    with pytest.raises(GatewayError) as info:
        plan(route(candidate("single", single)), {"model": "m", "messages": MESSAGES, "n": 2})
    assert info.value.param == "n"


def test_prompts_too_long_for_a_target_go_to_a_larger_one() -> None:
    small, large = Capabilities(max_context=50), Capabilities(max_context=100_000)
    r = route(candidate("small", small), candidate("large", large))
    long_prompt = [{"role": "user", "content": "word " * 400}]
    assert [a.target.model for a in plan(r, {"model": "m", "messages": long_prompt})] == ["large"]
    short = plan(r, {"model": "m", "messages": MESSAGES})
    assert [a.target.model for a in short] == ["small", "large"]
    with pytest.raises(GatewayError) as info:
        plan(route(candidate("small", small)), {"model": "m", "messages": long_prompt})
    assert info.value.param == "messages" and "context 50" in info.value.message
