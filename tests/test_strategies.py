"""The routing strategies as pure functions (core.routing.ordering, core.routing.signals), the
estimates they read (core.resilience.latency) and how those are shared between replicas
(core.resilience.stats_sync), on a fake clock: no test here sleeps or times anything."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterator

import pytest

from core.providers.adapters.base import Capabilities, ProviderError, Target
from core.resilience import health_checks
from core.resilience import latency as latency_module
from core.resilience.circuit import BreakerPolicy
from core.resilience.circuit_board import BreakerBoard
from core.resilience.health_checks import HealthChecks
from core.resilience.latency import LatencyTracker
from core.resilience.stats_sync import StatsSync
from core.resilience.stats_sync import metric_families as stats_metrics
from core.routing.demand import demand_of
from core.routing.ordering import order
from core.routing.registry import Candidate, Route
from core.routing.signals import NO_DEMAND, Demand, Signals, explain
from core.spend.pricing import CataloguePricing
from core.state.store import MemoryStore
from shared.config import ProviderConfig
from shared.config_prices import parse_prices
from shared.config_strategy import ScoreWeights, parse_strategy
from shared.configparse import ConfigError
from shared.errors import FailureClass
from tests.support.flat_pricing import FlatPricing
from tests.support.prom import page_of, samples, value
from tests.support.providers import provider_of

DOWN = ProviderError(503, "down", FailureClass.TRANSIENT, upstream_status=503)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    fake = Clock()
    monkeypatch.setattr(latency_module, "time", fake)
    monkeypatch.setattr(health_checks, "time", fake)
    yield fake


def route(strategy: str, *models: str, **options: object) -> Route:
    provider = provider_of(ProviderConfig("p", "mock", None, (), {}, None, False))
    candidates = tuple(
        Candidate(Target(provider, name, None), provider.upstream, Capabilities())
        for name in models
    )
    weights = options.pop("weights", (1.0,) * len(models))
    return Route("m", candidates, True, True, strategy, weights, **options)  # type: ignore[arg-type]


def models(ordered: Route) -> list[str]:
    return [c.target.model for c in ordered.candidates]


def ordered(r: Route, signals: Signals, demand: Demand = NO_DEMAND, seed: int = 1) -> list[str]:
    return models(order(r, signals, random.Random(seed), demand))


# --- cost -------------------------------------------------------------------------------


def test_cost_puts_the_cheapest_for_the_requests_tokens_first() -> None:
    # mock-cheap: 10/40 per token, output limit 64; mock-1: 1/4, limit 4096.
    signals = Signals(pricing=FlatPricing())
    r = route("cost", "mock-pricey", "mock-cheap", "mock-1")
    assert ordered(r, signals, Demand(100, 10)) == ["mock-1", "mock-cheap", "mock-pricey"]
    # Uncapped output: mock-1 reserves 4096 tokens (16384) against mock-cheap's 64 (1000+2560).
    assert ordered(r, signals, Demand(100, None)) == ["mock-cheap", "mock-1", "mock-pricey"]


def test_cost_moves_when_a_price_changes_and_unpriced_targets_go_last() -> None:
    def pricing(a: str, b: str) -> CataloguePricing:
        return CataloguePricing(
            parse_prices(
                {
                    "models": {
                        "p/a": {"input": a, "output": a},
                        "p/b": {"input": b, "output": b},
                    }
                }
            )
        )

    r = route("cost", "unknown-model", "a", "b")
    demand = Demand(1000, 100)
    before = Signals(pricing=pricing("1.00", "2.00"))
    after = Signals(pricing=pricing("3.00", "2.00"))
    assert ordered(r, before, demand) == ["a", "b", "unknown-model"]
    assert ordered(r, after, demand) == ["b", "a", "unknown-model"]


def test_cost_ties_are_broken_by_health(clock: Clock) -> None:
    board = BreakerBoard(BreakerPolicy(0.5, 2, 30.0, 60.0), MemoryStore())
    tracker = LatencyTracker()
    signals = Signals(tracker, board, FlatPricing())
    r = route("cost", "x", "y", "z")  # the same default price
    tracker.outcome("p/x", failed=True)
    assert ordered(r, signals, Demand(10, 10)) == ["y", "z", "x"]
    for _ in range(3):
        board.record("p/y", None)
    for _ in range(4):
        board.record("p/z", DOWN)
    assert ordered(r, signals, Demand(10, 10)) == ["y", "x", "z"]  # z's circuit is open


# --- latency ------------------------------------------------------------------------------


def test_latency_uses_time_to_first_chunk_for_streams_and_the_total_otherwise(
    clock: Clock,
) -> None:
    tracker = LatencyTracker()
    tracker.observe("p/a", 0.1, streaming=True)
    tracker.observe("p/a", 2.0)
    tracker.observe("p/b", 0.5, streaming=True)
    tracker.observe("p/b", 1.0)
    r = route("latency", "a", "b")
    assert ordered(r, Signals(tracker), Demand(streaming=True)) == ["a", "b"]
    assert ordered(r, Signals(tracker), Demand(streaming=False)) == ["b", "a"]
    assert ordered(route("least_latency", "a", "b"), Signals(tracker)) == ["b", "a"]


def test_error_rate_lowers_a_targets_latency_rank_before_its_breaker_opens(
    clock: Clock,
) -> None:
    tracker = LatencyTracker()
    tracker.observe("p/a", 0.10)
    tracker.observe("p/b", 0.15)
    r = route("latency", "a", "b")
    assert ordered(r, Signals(tracker)) == ["a", "b"]
    for _ in range(5):  # 1 - 0.9^5 = 41% of recent tries failed: 0.10 / 0.59 > 0.15
        tracker.outcome("p/a", failed=True)
    assert ordered(r, Signals(tracker)) == ["b", "a"]
    clock.now += 120  # the error rate decays (half-life 30 s): a is back first
    tracker.observe("p/a", 0.10)
    tracker.observe("p/b", 0.15)
    assert ordered(r, Signals(tracker)) == ["a", "b"]


def test_a_stale_estimate_is_probed_once_per_period_and_the_probe_replaces_it(
    clock: Clock,
) -> None:
    tracker = LatencyTracker(explore_after_s=10)
    signals, r = Signals(tracker), route("latency", "fast", "slow")
    tracker.observe("p/fast", 0.1)
    tracker.observe("p/slow", 3.0)
    for _ in range(10):  # only fast gets traffic: slow's estimate ages
        assert ordered(r, signals) == ["fast", "slow"]
        clock.now += 1
        tracker.observe("p/fast", 0.1)
    assert ordered(r, signals) == ["fast", "slow"]  # 10 s old: not stale yet
    clock.now += 0.5
    assert ordered(r, signals) == ["slow", "fast"]  # the probe
    assert ordered(r, signals) == ["fast", "slow"]  # one per period
    tracker.observe("p/slow", 0.05)  # it recovered: the probe's answer replaces 3.0
    assert ordered(r, signals) == ["slow", "fast"]
    assert tracker.estimate("p/slow") == 0.05


def test_unseen_targets_are_explored_first(clock: Clock) -> None:
    tracker = LatencyTracker()
    tracker.observe("p/a", 0.5)
    assert ordered(route("latency", "a", "b"), Signals(tracker)) == ["b", "a"]


# --- weighted with errors -----------------------------------------------------------------


def test_a_failing_target_gets_a_smaller_weighted_share(clock: Clock) -> None:
    tracker = LatencyTracker()
    r = route("weighted", "a", "b")
    rng = random.Random(5)

    def share_of_a() -> float:
        firsts = Counter(models(order(r, Signals(tracker), rng))[0] for _ in range(4000))
        return firsts["a"] / 4000

    assert 0.45 < share_of_a() < 0.55
    for _ in range(7):  # error rate 1 - 0.9^7 = 52%: a's share (0.48^2 = 0.23) ~ 19%
        tracker.outcome("p/a", failed=True)
    assert 0.14 < share_of_a() < 0.25


# --- score ------------------------------------------------------------------------------


def test_score_weighs_cost_latency_and_errors_as_configured(clock: Clock) -> None:
    tracker = LatencyTracker()
    tracker.observe("p/mock-1", 2.0)  # cheap and slow
    tracker.observe("p/mock-pricey", 0.2)  # dear and fast
    cheap_first = route("score", "mock-pricey", "mock-1", score_weights=ScoreWeights(1, 0.1, 1, 0))
    fast_first = route("score", "mock-pricey", "mock-1", score_weights=ScoreWeights(0.1, 1, 1, 0))
    signals = Signals(tracker, pricing=FlatPricing())
    assert ordered(cheap_first, signals, Demand(100, 10)) == ["mock-1", "mock-pricey"]
    assert ordered(fast_first, signals, Demand(100, 10)) == ["mock-pricey", "mock-1"]
    views = {v.model: v for v in explain(fast_first, signals, Demand(100, 10))}
    # mock-1: cost 140/14000 x 0.1 + latency 1 x 1 = 1.001; mock-pricey: 0.1 + 0.1 = 0.2
    assert views["mock-1"].score == pytest.approx(1.001)
    assert views["mock-pricey"].score == pytest.approx(0.2)


def test_affinity_counts_in_a_targets_favour() -> None:
    def affinity(target: Target, demand: Demand) -> float:
        return 1.0 if target.model == "b" else 0.0

    r = route("score", "a", "b", score_weights=ScoreWeights(0, 0, 0, 1))
    assert ordered(r, Signals(affinity=affinity)) == ["b", "a"]
    assert ordered(r, Signals()) == ["a", "b"]


# --- latency ceiling and explain ----------------------------------------------------------


def test_targets_over_the_ceiling_are_tried_only_after_every_other(clock: Clock) -> None:
    tracker = LatencyTracker()
    for label, seconds in (("p/a", 0.9), ("p/b", 0.3), ("p/c", 0.5)):
        tracker.observe(label, seconds)
    signals = Signals(tracker)
    assert ordered(route("fallback", "a", "b", "c", ceiling_s=0.4), signals) == ["b", "a", "c"]
    # The request's ceiling (a routing rule's) wins over the route's.
    wide = Demand(ceiling_s=1.0)
    assert ordered(route("fallback", "a", "b", "c", ceiling_s=0.4), signals, wide) == [
        "a",
        "b",
        "c",
    ]
    # None within it: nobody is skipped.
    assert ordered(route("latency", "a", "b", "c", ceiling_s=0.1), signals) == ["b", "c", "a"]


@pytest.mark.parametrize("strategy", ["fallback", "weighted", "cost", "latency"])
def test_a_target_the_ceiling_shuns_is_probed_once_its_estimate_is_stale(
    clock: Clock, strategy: str
) -> None:
    """The ceiling keeps a slow target from traffic, so nothing would measure it again: once
    its estimate is stale it gets its one probe per period, whatever the strategy."""
    tracker = LatencyTracker(explore_after_s=10)
    signals = Signals(tracker, pricing=FlatPricing())
    r = route(strategy, "slow", "fast", ceiling_s=0.2)
    tracker.observe("p/slow", 0.9)
    tracker.observe("p/fast", 0.1)
    for _ in range(11):  # fast serves; slow's estimate ages
        assert ordered(r, signals)[0] == "fast"
        clock.now += 1
        tracker.observe("p/fast", 0.1)
    assert ordered(r, signals)[0] == "slow"  # the probe
    assert ordered(r, signals)[0] == "fast"  # one per period
    tracker.observe("p/slow", 0.05)  # it recovered: within the ceiling, first again
    if strategy != "weighted":  # (weighted draws its order)
        assert ordered(r, signals)[0] == "slow"


def test_explain_lists_every_candidate_with_its_numbers_and_skip_reason(clock: Clock) -> None:
    tracker = LatencyTracker()
    board = BreakerBoard(BreakerPolicy(0.5, 1, 30.0, 60.0), MemoryStore())
    tracker.observe("p/mock-cheap", 0.9)
    tracker.observe("p/mock-1", 0.2)
    tracker.outcome("p/mock-1", failed=False)
    board.record("p/mock-pricey", DOWN)
    r = route("cost", "mock-pricey", "mock-cheap", "mock-1", ceiling_s=0.5)
    views = explain(r, Signals(tracker, board, FlatPricing()), Demand(100, 10))
    assert [(v.model, v.cost_micros, v.latency_s, v.skip) for v in views] == [
        ("mock-pricey", 14000, None, "circuit_open"),
        ("mock-cheap", 1400, 0.9, "ceiling"),
        ("mock-1", 140, 0.2, None),
    ]
    assert [v.error_rate for v in views] == [0.0, 0.0, 0.0] and views[0].score is None


# --- sharing between replicas -------------------------------------------------------------


def test_a_slowdown_one_replica_sees_steers_the_other_after_one_sync(clock: Clock) -> None:
    store = MemoryStore()  # stands for Redis: one store, two replicas
    one, two = LatencyTracker(), LatencyTracker()
    for tracker in (one, two):
        tracker.track(["p/a", "p/b"])
    sync_one, sync_two = StatsSync(one, store), StatsSync(two, store)
    r = route("latency", "a", "b")
    two.observe("p/a", 0.1)  # replica two knows a as fast...
    two.observe("p/b", 0.3)
    clock.now += 5
    one.observe("p/a", 2.0)  # ...replica one has just seen it slow down
    one.observe("p/b", 0.3)
    assert ordered(r, Signals(two)) == ["a", "b"]

    async def rounds() -> None:
        await sync_one.sync()
        await sync_two.sync()

    asyncio.run(rounds())
    assert ordered(r, Signals(two)) == ["b", "a"]
    assert two.expected("p/a") == pytest.approx((0.1 * 0.5**2.5 + 2.0) / (0.5**2.5 + 1), rel=1e-3)


def test_sync_takes_in_only_tracked_labels_and_survives_garbage(clock: Clock) -> None:
    store = MemoryStore()
    tracker = LatencyTracker(max_entries=2)
    tracker.track(["p/a"])
    sync = StatsSync(tracker, store)

    async def scenario() -> None:
        await store.share([("il:{l:p/a}:stats", b"not json")], "other", 60)
        await store.share([("il:{l:p/zzz}:stats", b'{"total": [1.0, 0]}')], "other", 60)
        await sync.sync()

    asyncio.run(scenario())
    assert tracker.labels() == ["p/a"] and tracker.expected("p/a") is None


# --- config -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"strategy": "fastest"}, "models.m.strategy: expected one of"),
        ({"latency_ceiling_ms": 0}, "models.m.latency_ceiling_ms: expected milliseconds"),
        ({"latency_ceiling_ms": "1s"}, "models.m.latency_ceiling_ms"),
        ({"score_weights": {"cost": 1}}, "models.m.score_weights: only used with strategy"),
        (
            {"strategy": "score", "score_weights": {"speed": 1}},
            "models.m.score_weights.speed: unknown weight",
        ),
        (
            {"strategy": "score", "score_weights": {"cost": -1}},
            "models.m.score_weights.cost: expected a number >= 0",
        ),
        (
            {"strategy": "score", "score_weights": {"cost": 0}},
            "models.m.score_weights: at least one weight",
        ),
    ],
)
def test_strategy_config_errors_name_their_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        parse_strategy(raw, "models.m")


def test_strategy_config_values() -> None:
    assert parse_strategy({"strategy": "least_latency"}, "m").strategy == "latency"
    parsed = parse_strategy(
        {"strategy": "score", "latency_ceiling_ms": 250, "score_weights": {"cost": 2}}, "m"
    )
    assert parsed.latency_ceiling_s == 0.25
    assert parsed.score_weights == ScoreWeights(2.0, 0.0, 0.0, 0.0)


# --- active health checks -----------------------------------------------------------------


class Upstream:
    def __init__(self, error: ProviderError | None = None) -> None:
        self.error = error
        self.sent: list[dict[str, object]] = []

    async def complete(self, canonical: dict[str, object], target: Target) -> dict[str, object]:
        self.sent.append(canonical)
        if self.error is not None:
            raise self.error
        return {}


def test_health_checks_probe_idle_targets_once_per_interval_and_feed_the_estimates(
    clock: Clock,
) -> None:
    tracker = LatencyTracker()
    up, down = Upstream(), Upstream(DOWN)
    busy, idle, failing = (c for c in route("latency", "busy", "idle", "failing").candidates)
    targets = [
        (Candidate(busy.target, up, Capabilities()), 5.0),  # type: ignore[arg-type]
        (Candidate(idle.target, up, Capabilities()), 5.0),  # type: ignore[arg-type]
        (Candidate(failing.target, down, Capabilities()), 5.0),  # type: ignore[arg-type]
    ]
    checks = HealthChecks(targets, tracker)
    tracker.observe("p/busy", 0.2)  # traffic: no check needed
    asyncio.run(checks.run())
    assert [c["model"] for c in up.sent] == ["idle"] and len(down.sent) == 1
    assert up.sent[0]["max_tokens"] == 1
    assert tracker.expected("p/idle") is not None and tracker.expected("p/idle", True) is not None
    assert tracker.error_rate("p/failing") > 0 and tracker.error_rate("p/idle") == 0
    clock.now += 4  # within the interval: nothing again
    asyncio.run(checks.run())
    assert checks.sent == 2
    clock.now += 2  # busy's traffic is now 6 s old, the others' checks too
    asyncio.run(checks.run())
    assert checks.sent == 5


def test_metrics_show_the_blended_estimates_and_checks(clock: Clock) -> None:
    tracker = LatencyTracker()
    tracker.track(["p/a", "p/b"])
    tracker.observe("p/a", 0.25)
    tracker.observe("p/a", 0.05, streaming=True)
    tracker.outcome("p/a", failed=True)
    found = samples(page_of(stats_metrics(tracker, 7)))
    latency = "interlock_target_latency_seconds"
    assert value(found, latency, target="p/a", kind="total") == pytest.approx(0.25)
    assert value(found, latency, target="p/a", kind="ttft") == pytest.approx(0.05)
    assert value(found, "interlock_target_error_rate", target="p/a") == pytest.approx(0.1)
    assert value(found, "interlock_target_error_rate", target="p/b") == 0
    assert value(found, latency, target="p/b", kind="total") is None  # unseen: no estimate
    assert value(found, "interlock_health_checks_total") == 7


def test_other_replicas_kept_per_label_are_bounded_to_the_freshest(clock: Clock) -> None:
    tracker = LatencyTracker()
    tracker.track(["p/a"])
    replicas = {f"r{i}": {"total": (float(i), float(i))} for i in range(200)}
    tracker.merge_remote("p/a", replicas)
    # Only r0..r63 (the youngest) are kept: the blend never sees r64's value or later.
    assert tracker.expected("p/a") is not None and tracker.expected("p/a") < 64  # type: ignore[operator]
    stats = tracker._stats["p/a"]
    assert sorted(stats.remote, key=lambda r: int(r[1:])) == [f"r{i}" for i in range(64)]


def test_demand_prices_the_prompt_and_the_output_cap_times_n() -> None:
    chat = {"messages": [{"role": "user", "content": "hello " * 40}], "max_tokens": 50, "n": 3}
    demand = demand_of(chat, True, 0.5, lambda: 999)
    assert demand.input_tokens == 999  # the exchange's one prompt estimate
    assert (demand.max_output_tokens, demand.streaming, demand.ceiling_s) == (150, True, 0.5)
    assert demand_of({"messages": []}, False, None, lambda: 1).max_output_tokens is None
    embeddings = demand_of({"input": "hi"}, False, None, lambda: 7)
    assert (embeddings.input_tokens, embeddings.max_output_tokens) == (7, 0)
