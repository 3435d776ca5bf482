"""What the routing strategies weigh for each candidate of one request, and why one is skipped.

`assess` is the one place a candidate's numbers are computed: its estimated cost for this
request (priced like a budget reservation: the input estimate plus the smaller of `max_tokens`
and the model's output limit), its expected latency (time to first chunk for streams, whole
answer otherwise), its recent error rate, its prompt-cache affinity, its score (strategy
`score`) and its skip reason. The ordering (core.routing.ordering) sorts by these numbers, and
`explain` hands the same numbers to whoever must show them (an explain command, an admin
endpoint), so what is shown is what was decided.

Prompt-cache affinity: the plan stage looks up, once per request that carries cache marks,
which target and key already hold its prefix (core.cache.affinity) and hands it in as
`Demand.holder`; `holder_affinity` reads it, so `assess` stays pure and per-candidate cheap.

Skip reasons: `ceiling` (expected slower than the request's latency ceiling while another
candidate is not: tried only after every other), `circuit_open` (the breaker refuses it now:
the dispatcher passes over it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from core.providers.adapters.base import Target
from core.resilience.circuit_board import BreakerBoard
from core.resilience.latency import LatencyTracker
from core.routing.registry import Route
from core.spend.cost import Pricing


@dataclass(frozen=True, slots=True)
class Holder:
    """The target (its health label) and key (core.resilience.key_pools.key_id) that served
    a request's prompt-cache prefix last, so hold it in their provider's cache."""

    label: str
    key_id: str


@dataclass(frozen=True, slots=True)
class Demand:
    """What ordering knows of the request before it is sent."""

    input_tokens: int = 0
    max_output_tokens: int | None = None  # the request's cap (x n); None: uncapped
    streaming: bool = False
    ceiling_s: float | None = None  # set by a routing rule; wins over the route's own
    holder: Holder | None = None  # who holds the request's cached prefix (looked up at plan)


NO_DEMAND = Demand()

# A target's prompt-cache affinity for a request, in [0, 1] (1: it holds the request's
# prefix).
Affinity = Callable[[Target, Demand], float]


def holder_affinity(target: Target, demand: Demand) -> float:
    """1 for the target that holds the request's prefix, 0 for every other."""
    holder = demand.holder
    return 1.0 if holder is not None and holder.label == target.health_label else 0.0


@dataclass(slots=True)
class Signals:
    """Everything the strategies read, built once at start-up (core.app)."""

    latency: LatencyTracker = field(default_factory=LatencyTracker)
    breakers: BreakerBoard | None = None
    pricing: Pricing | None = None
    affinity: Affinity = holder_affinity


@dataclass(frozen=True, slots=True)
class CandidateView:
    """One candidate as the strategies saw it (for explain; configured order)."""

    provider: str
    model: str
    label: str
    cost_micros: int | None  # estimated, for this request; None without pricing
    unpriced: bool  # no price: ordered after every priced target by `cost`
    latency_s: float | None  # expected; None when unseen
    error_rate: float
    affinity: float
    score: float | None  # strategy `score` only; lower is tried earlier
    skip: str | None  # "ceiling", "circuit_open" or None


def ceiling_of(route: Route, demand: Demand) -> float | None:
    return demand.ceiling_s if demand.ceiling_s is not None else route.ceiling_s


def expected_latency(latency_s: float | None, error_rate: float) -> float | None:
    """Latency counting failures: a target failing a share `e` of tries takes about
    1 / (1 - e) tries per answer, so its error rate lowers its rank before its breaker opens."""
    if latency_s is None:
        return None
    return latency_s / max(0.05, 1.0 - error_rate)


def assess(
    route: Route, signals: Signals, demand: Demand = NO_DEMAND, with_cost: bool = True
) -> list[CandidateView]:
    """Every candidate's numbers for this request, in the route's configured order;
    `with_cost=False` skips pricing (the ordering of strategies that do not weigh cost)."""
    tracker, breakers = signals.latency, signals.breakers
    pricing = signals.pricing if with_cost else None
    rows = []
    for candidate in route.candidates:
        target = candidate.target
        label = target.health_label
        cost = (
            pricing.estimate(target, demand.input_tokens, demand.max_output_tokens)
            if pricing is not None
            else None
        )
        open_circuit = breakers is not None and breakers.retry_after(label) > 0
        rows.append(
            CandidateView(
                provider=target.provider.name,
                model=target.model,
                label=label,
                cost_micros=cost.micros if cost is not None and not cost.unpriced else None,
                unpriced=cost is not None and cost.unpriced,
                latency_s=tracker.expected(label, demand.streaming),
                error_rate=tracker.error_rate(label),
                affinity=min(1.0, max(0.0, signals.affinity(target, demand))),
                score=None,
                skip="circuit_open" if open_circuit else None,
            )
        )
    if route.strategy == "score":
        rows = _scored(route, rows)
    return _ceiling(rows, ceiling_of(route, demand))


def explain(route: Route, signals: Signals, demand: Demand = NO_DEMAND) -> list[CandidateView]:
    """The candidate details an explain command shows: pure (no probe is claimed). Costs are
    priced for `demand`'s tokens whatever the strategy (give it the request's estimate)."""
    return assess(route, signals, demand)


def _scored(route: Route, rows: list[CandidateView]) -> list[CandidateView]:
    """score = w_cost x cost/max cost + w_latency x latency/max latency + w_errors x error
    rate - w_affinity x affinity. Unpriced targets count as the dearest, unseen ones as the
    fastest (so they are explored)."""
    w = route.score_weights
    costs = [r.cost_micros for r in rows if r.cost_micros is not None]
    top_cost = max(costs, default=0)
    latencies = [expected_latency(r.latency_s, r.error_rate) for r in rows]
    top_latency = max((v for v in latencies if v is not None), default=0.0)
    out = []
    for row, latency in zip(rows, latencies, strict=True):
        if row.cost_micros is None:
            cost_n = 1.0 if row.unpriced else 0.0
        else:
            cost_n = row.cost_micros / top_cost if top_cost else 0.0
        latency_n = latency / top_latency if latency is not None and top_latency else 0.0
        score = (
            w.cost * cost_n
            + w.latency * latency_n
            + w.errors * row.error_rate
            - w.affinity * row.affinity
        )
        out.append(replace(row, score=round(score, 6)))
    return out


def _ceiling(rows: list[CandidateView], ceiling: float | None) -> list[CandidateView]:
    """Candidates expected slower than `ceiling` are marked, unless every one of them is."""
    if ceiling is None:
        return rows
    over = [r.latency_s is not None and r.latency_s > ceiling for r in rows]
    if all(over):
        return rows
    marked = zip(rows, over, strict=True)
    return [replace(r, skip=r.skip or "ceiling") if slow else r for r, slow in marked]
