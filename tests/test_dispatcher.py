"""The Dispatcher's decisions, in-process with scripted upstreams: ordering strategies, key
rotation, failover vs same-target retry, deadlines, breakers and key capacity."""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from core.limits.tenant import Settlements
from core.providers.adapters.base import JSON, Capabilities, ProviderError, Target
from core.resilience.circuit import BreakerPolicy
from core.resilience.circuit_board import BreakerBoard
from core.resilience.dispatch import Dispatcher
from core.resilience.key_pools import KeyPools
from core.resilience.latency import LatencyTracker
from core.routing.planning import Attempt, plan_chat
from core.routing.registry import Candidate, ModelRegistry, Route
from core.state.store import MemoryStore
from shared.config import ProviderConfig, ResilienceConfig
from shared.errors import FailureClass
from tests.support.collector import collector_off
from tests.support.dispatching import run_completion, run_stream
from tests.support.providers import provider_of

OK: JSON = {"choices": [{"message": {"content": "ok"}}]}
FAST = ResilienceConfig(backoff_base_s=0.001, backoff_cap_s=0.002, key_wait_max_s=0.0)


def fail(cls: FailureClass, status: int = 500, retry_after: float | None = None) -> ProviderError:
    return ProviderError(status, cls.value, cls, retry_after_s=retry_after)


class Scripted:
    """Answers per call from a script of errors (None = success); records the keys used."""

    def __init__(self, script: list[ProviderError | None]) -> None:
        self.script = list(script)
        self.keys: list[str | None] = []

    def capabilities(self, target: Target) -> Capabilities:
        return Capabilities()

    async def complete(self, canonical: JSON, target: Target) -> JSON:
        self.keys.append(target.api_key.reveal() if target.api_key else None)
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome
        return OK

    async def stream(self, canonical: JSON, target: Target) -> AsyncIterator[JSON]:
        await self.complete(canonical, target)
        yield {"choices": [{"delta": {"content": "ok"}}]}


def provider(name: str, keys: tuple[str, ...] = ("k",), rpm: int | None = None) -> ProviderConfig:
    return ProviderConfig(name, "stub", None, keys, {}, None, False, {}, key_rpm=rpm)


def setup(
    *specs: tuple[str, Scripted, tuple[str, ...]],
    policy: ResilienceConfig = FAST,
    rpm: int | None = None,
) -> tuple[Dispatcher, list[Attempt]]:
    store = MemoryStore()
    providers = {name: provider(name, keys, rpm) for name, _, keys in specs}
    keys = KeyPools(providers, store, Settlements(store))
    board = BreakerBoard(BreakerPolicy(min_requests=1000), store)
    attempts = [
        Attempt(
            Target(provider_of(providers[name]), name, providers[name].api_keys[0]),
            upstream,
            {"model": "m"},
            (),
        )
        for name, upstream, _ in specs
    ]
    return Dispatcher(policy, board, keys, LatencyTracker(), random.Random(7)), attempts


def run(dispatcher: Dispatcher, attempts: list[Attempt]):  # type: ignore[no-untyped-def]
    return asyncio.run(run_completion(dispatcher, attempts))


def test_failover_to_the_next_target_without_retrying_the_first() -> None:
    first, second = Scripted([fail(FailureClass.TRANSIENT)]), Scripted([])
    dispatcher, attempts = setup(("a", first, ("k",)), ("b", second, ("k",)))
    result, outcome = run(dispatcher, attempts)
    assert result is OK and outcome.target.model == "b"
    assert (outcome.attempts, outcome.failovers, outcome.retries) == (2, 1, 0)
    assert len(first.keys) == 1


def test_last_target_is_retried_with_backoff() -> None:
    only = Scripted([fail(FailureClass.RATE_LIMIT, 429, 0.001), fail(FailureClass.TIMEOUT, 504)])
    dispatcher, attempts = setup(("a", only, ("k",)))
    _, outcome = run(dispatcher, attempts)
    assert (outcome.attempts, outcome.retries) == (3, 2)


def test_retries_stop_at_max_retries() -> None:
    only = Scripted([fail(FailureClass.TRANSIENT)] * 5)
    dispatcher, attempts = setup(("a", only, ("k",)))
    with pytest.raises(ProviderError) as info:
        run(dispatcher, attempts)
    assert info.value.attempts == 3 and len(only.keys) == 3


def test_one_requests_retries_count_once_against_the_breaker() -> None:
    only = Scripted([fail(FailureClass.TRANSIENT, 503)] * 3)
    dispatcher, attempts = setup(("a", only, ("k",)))
    with pytest.raises(ProviderError):
        run(dispatcher, attempts)
    assert len(only.keys) == 3  # three attempts...
    assert dispatcher.breakers._get("a/a").counts(time.monotonic()) == (1, 1)  # ...one charge


@pytest.mark.parametrize("cls", [FailureClass.CLIENT_ERROR, FailureClass.CONTENT_FILTER])
def test_client_errors_are_returned_at_once(cls: FailureClass) -> None:
    first, second = Scripted([fail(cls, 400)]), Scripted([])
    dispatcher, attempts = setup(("a", first, ("k",)), ("b", second, ("k",)))
    with pytest.raises(ProviderError):
        run(dispatcher, attempts)
    assert second.keys == []


@pytest.mark.parametrize(
    "cls", [FailureClass.AUTH, FailureClass.QUOTA_EXHAUSTED, FailureClass.RATE_LIMIT]
)
def test_key_rotation_before_failover(cls: FailureClass) -> None:
    only = Scripted([fail(cls, 429)])
    dispatcher, attempts = setup(("a", only, ("k1", "k2")))
    _, outcome = run(dispatcher, attempts)
    assert len(set(only.keys)) == 2 and outcome.retries == 0  # another key, no backoff


def test_quota_never_retries_the_same_key() -> None:
    only = Scripted([fail(FailureClass.QUOTA_EXHAUSTED, 429)])
    dispatcher, attempts = setup(("a", only, ("k",)))
    with pytest.raises(ProviderError):
        run(dispatcher, attempts)
    assert only.keys == ["k"]


def test_retry_after_beyond_the_deadline_is_not_waited_for() -> None:
    only = Scripted([fail(FailureClass.RATE_LIMIT, 429, retry_after=5.0)])
    policy = ResilienceConfig(total_deadline_s=1.0, retry_after_cap_s=30)
    dispatcher, attempts = setup(("a", only, ("k",)), policy=policy)
    with pytest.raises(ProviderError) as info:
        run(dispatcher, attempts)
    assert info.value.failure_class is FailureClass.RATE_LIMIT and len(only.keys) == 1


def test_no_key_capacity_fails_over_then_429s() -> None:
    first, second = Scripted([]), Scripted([])
    dispatcher, attempts = setup(("a", first, ("k",)), ("b", second, ("k",)), rpm=1)

    async def scenario() -> list[str]:
        served = []
        for _ in range(2):
            _, outcome = await run_completion(dispatcher, attempts)
            served.append(outcome.target.model)
        with pytest.raises(ProviderError) as info:
            await run_completion(dispatcher, attempts)
        assert info.value.status == 429 and info.value.failure_class is FailureClass.RATE_LIMIT
        return served

    assert asyncio.run(scenario()) == ["a", "b"]  # a's key spent: b serves; then nothing left


def test_open_breaker_skips_target_and_fails_fast_when_all_open() -> None:
    first, second = Scripted([]), Scripted([])
    dispatcher, attempts = setup(("a", first, ("k",)), ("b", second, ("k",)))
    dispatcher.breakers._get("a/a").trip(0.0, until=10**12)
    _, outcome = run(dispatcher, attempts)
    assert outcome.target.model == "b" and first.keys == []
    dispatcher.breakers._get("b/b").trip(0.0, until=10**12)
    with pytest.raises(ProviderError) as info:
        run(dispatcher, attempts)
    assert info.value.code == "circuit_open" and info.value.status == 503


def _route(strategy: str, weights: tuple[float, ...]) -> Route:
    candidates = tuple(
        Candidate(Target(provider_of(provider(n)), n, "k"), Scripted([]), Capabilities())
        for n in ("a", "b", "c")
    )
    base = ModelRegistry._route("m", candidates, True)
    return Route("m", candidates, True, base.unrestricted, strategy, weights)


def test_weighted_order_follows_weights() -> None:
    dispatcher, _ = setup(("a", Scripted([]), ("k",)))
    route = _route("weighted", (8.0, 1.0, 1.0))
    firsts = Counter(
        dispatcher.plan(route, {"model": "m", "messages": []}, plan_chat)[0].target.model
        for _ in range(2000)
    )
    assert firsts["a"] > 1400 and firsts["b"] > 100 and firsts["c"] > 100
    assert all(len(dispatcher.plan(route, {"model": "m"}, plan_chat)) == 3 for _ in range(10))


def test_least_latency_prefers_the_fastest_observed() -> None:
    dispatcher, _ = setup(("a", Scripted([]), ("k",)))
    for label, seconds in (("a/a", 0.9), ("b/b", 0.1), ("c/c", 0.5)):
        dispatcher.latency.observe(label, seconds)
    route = _route("least_latency", (1.0, 1.0, 1.0))
    ordered = dispatcher.plan(route, {"model": "m"}, plan_chat)
    assert [a.target.model for a in ordered] == ["b", "c", "a"]


class Slow(Scripted):
    """Answers after `delay_s`: longer than a test's completion timeout."""

    def __init__(self, delay_s: float) -> None:
        super().__init__([])
        self.delay_s = delay_s

    async def complete(self, canonical: JSON, target: Target) -> JSON:
        self.keys.append(None)
        await asyncio.sleep(self.delay_s)
        return OK


TIMEOUTS = replace(FAST, completion_timeout_s=0.05, first_byte_timeout_s=0.05)


@pytest.mark.parametrize("stream", [False, True])
def test_a_timeout_after_the_upstream_had_the_request_is_not_retried(stream: bool) -> None:
    only = Slow(1.0)
    dispatcher, attempts = setup(("a", only, ("k",)), policy=TIMEOUTS)
    with pytest.raises(ProviderError) as info:
        asyncio.run(
            run_stream(dispatcher, attempts) if stream else run_completion(dispatcher, attempts)
        )
    assert info.value.status == 504 and info.value.failure_class is FailureClass.TIMEOUT
    assert len(only.keys) == 1 and info.value.attempts == 1


def test_retry_timeouts_opts_in_to_retrying_the_same_target() -> None:
    only = Slow(1.0)
    policy = replace(TIMEOUTS, retry_timeouts=True)
    dispatcher, attempts = setup(("a", only, ("k",)), policy=policy)
    with pytest.raises(ProviderError):
        run(dispatcher, attempts)
    assert len(only.keys) == 1 + policy.max_retries


def test_a_timeout_still_fails_over_to_another_target() -> None:
    slow, other = Slow(1.0), Scripted([])
    dispatcher, attempts = setup(("a", slow, ("k",)), ("b", other, ("k",)), policy=TIMEOUTS)
    _, outcome = run(dispatcher, attempts)
    assert outcome.target.model == "b" and outcome.failovers == 1 and len(slow.keys) == 1


def test_the_completion_timeout_is_bounded_by_the_providers_total_timeout() -> None:
    """Else the transport's total timeout would fire first and look like a connect failure."""
    slow = Slow(1.0)
    dispatcher, attempts = setup(("a", slow, ("k",)), policy=replace(FAST, max_retries=2))
    short = replace(attempts[0].target.provider, timeout_s=0.05)
    attempts[0].target = Target(short, "a", "k")
    with pytest.raises(ProviderError) as info:
        run(dispatcher, attempts)
    assert info.value.status == 504 and len(slow.keys) == 1


class Failing(Scripted):
    """Raises a new error on every call, holding none of them itself."""

    def __init__(self, cls: FailureClass, status: int) -> None:
        super().__init__([])
        self.cls, self.status = cls, status

    async def complete(self, canonical: JSON, target: Target) -> JSON:
        raise fail(self.cls, self.status)


@pytest.mark.parametrize(
    ("cls", "status"),
    [(FailureClass.CLIENT_ERROR, 400), (FailureClass.TRANSIENT, 503)],
    ids=["raised-at-once", "after-retries"],
)
def test_a_failed_run_leaves_no_cycle_for_the_collector(cls: FailureClass, status: int) -> None:
    """The error a run raises is freed with its last reference, not by a full collection:
    the run kept it (`last_error`) while its traceback held the run's frame, a cycle of
    every frame down to the transport (~120 objects an upstream error)."""
    dispatcher, attempts = setup(("a", Failing(cls, status), ("k",)))

    async def scenario() -> weakref.ref[ProviderError]:
        try:
            await run_completion(dispatcher, attempts)
        except ProviderError as error:
            return weakref.ref(error)
        raise AssertionError("the run did not fail")

    with collector_off():
        assert asyncio.run(scenario())() is None
