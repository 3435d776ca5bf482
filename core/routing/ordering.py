"""Ordering by strategy: the order in which one request tries a route's candidates.

- `fallback` keeps the configured order.
- `weighted` draws a random permutation, heavier targets more likely earlier (each next target
  picked in proportion to its weight among those left); a target's weight is scaled by
  (1 - its error rate)^2, so one failing often gets less traffic before its breaker opens.
- `latency` (alias `least_latency`) puts the lowest expected latency first: time to first
  chunk for streams, the whole answer otherwise, divided by (1 - error rate) (the tries it
  takes per answer). Unseen targets count as fastest, so each gets explored; a target whose
  estimate went stale (no replica observed it for `explore_after`) is probed by one request
  per period (core.resilience.latency), so a recovered target is noticed again.
- `cost` puts the cheapest for this request's estimated tokens first (core.routing.signals),
  ties broken by health (circuit open last, then lower error rate); unpriced targets go last.
- `score` sorts by a weighted sum of normalised cost, latency, error rate and prompt-cache
  affinity (weights from the route's `score_weights`); stale targets are probed as for latency.

Then the latency ceiling (the request's, set by a routing rule, else the route's
`latency_ceiling_ms`): candidates expected slower are moved behind every other, so they are
tried only when nothing else is left (none is moved when all of them are slower).

Then prompt-cache affinity (the route's `affinity`, on by default), a soft preference: under
`weighted`, `latency` and `cost`, the target holding the request's cached prefix
(Demand.holder, core.cache.affinity) is moved first, unless its circuit is open, the ceiling
moved it back, or it looks worse than the best other candidate by more than the route's
`affinity_margin` (0.5: half as bad again) at failing (its expected tries per answer,
1 / (1 - error rate)) under every strategy, and at what the strategy itself optimises: its
expected latency under `latency` (differences under AFFINITY_SLACK_S are noise), its estimated
cost under `cost`; `weighted` optimises neither, so only health overrides the holder there. A
cache read costs a tenth of fresh input and answers sooner, so a slightly dearer or slower
holder is usually the better pick; a clearly worse one is not. Health and budgets
still override it: a refused try (open circuit, no key capacity, a budget without room) falls
through to the next candidate, and the target that serves becomes the holder. `score` weighs
affinity itself (score_weights.affinity); `fallback` keeps the operator's order (a backup that
served while the primary was down must not keep the traffic), though the key pool of whichever
target serves still prefers the holder key (core.resilience.key_pools).

The route itself is reordered, before any API's planner runs, so chat, messages and embeddings
all follow the same strategy, and a planner only has to keep route order. Since a weighted
permutation restricted to any subset is again a weighted permutation of that subset, ordering
before planning skips nothing the planner would have drawn differently.
"""

from __future__ import annotations

import random
from dataclasses import replace

from core.routing.registry import Route
from core.routing.signals import (
    NO_DEMAND,
    CandidateView,
    Demand,
    Signals,
    assess,
    ceiling_of,
    expected_latency,
)

MIN_SHARE = 0.01  # the least fraction of its weight a failing target keeps
PRICED = frozenset({"cost", "score"})  # the strategies that weigh cost
AFFINE = frozenset({"weighted", "latency", "cost"})  # the holder may be moved first
AFFINITY_SLACK_S = 0.05  # latency differences this small never outweigh a cached prefix


def order(
    route: Route,
    signals: Signals,
    rng: random.Random,
    demand: Demand = NO_DEMAND,
    explore: bool = True,
) -> Route:
    """`route` with its candidates (and their weights) in this request's order. `explore=False`
    claims no exploration probe (a route explanation: the order without side effects)."""
    count = len(route.candidates)
    strategy = route.strategy
    ceiling = ceiling_of(route, demand)
    if count < 2 or (strategy == "fallback" and ceiling is None):
        return route
    rows: list[CandidateView] | None = None
    if strategy == "weighted":
        indices = _weighted(route, signals, rng)
    elif strategy == "fallback":
        indices = list(range(count))
    else:
        rows = assess(route, signals, demand, with_cost=strategy in PRICED)
        indices = _ranked(route, rows)
    if ceiling is not None:
        rows = rows or assess(route, signals, demand, with_cost=False)
        indices = _under_ceiling(indices, rows)
    if demand.holder is not None and route.affinity and strategy in AFFINE:
        indices = _holder_first(route, indices, rows, signals, demand)
    if explore and rows is not None:
        indices = _probe_first(indices, rows, signals, demand, strategy in ESTIMATED)
    return _reordered(route, indices)


ESTIMATED = ("latency", "score")  # strategies that rank by the latency estimate


def _reordered(route: Route, indices: list[int]) -> Route:
    if indices == list(range(len(route.candidates))):
        return route
    weights = route.weights or (1.0,) * len(route.candidates)
    return replace(
        route,
        candidates=tuple(route.candidates[i] for i in indices),
        weights=tuple(weights[i] for i in indices),
    )


def _weighted(route: Route, signals: Signals, rng: random.Random) -> list[int]:
    count = len(route.candidates)
    weights = route.weights or (1.0,) * count
    tracker = signals.latency
    shares = [
        w * max(MIN_SHARE, (1.0 - tracker.error_rate(c.target.health_label)) ** 2)
        for w, c in zip(weights, route.candidates, strict=True)
    ]
    remaining, indices = list(range(count)), []
    while remaining:
        pick = rng.choices(range(len(remaining)), [shares[i] for i in remaining])[0]
        indices.append(remaining.pop(pick))
    return indices


def _ranked(route: Route, rows: list[CandidateView]) -> list[int]:
    """latency, cost and score: a sort by the assessed numbers (stable: configured order
    breaks remaining ties)."""
    count = len(rows)
    if route.strategy == "cost":
        return sorted(
            range(count),
            key=lambda i: (
                rows[i].unpriced,
                rows[i].cost_micros or 0,
                rows[i].skip == "circuit_open",
                rows[i].error_rate,
            ),
        )
    if route.strategy == "score":
        return sorted(range(count), key=lambda i: rows[i].score or 0.0)
    expected = [expected_latency(r.latency_s, r.error_rate) or 0.0 for r in rows]
    return sorted(range(count), key=lambda i: expected[i])


def _probe_first(
    indices: list[int],
    rows: list[CandidateView],
    signals: Signals,
    demand: Demand,
    ranked_by_latency: bool,
) -> list[int]:
    """A claimed exploration probe first: a target whose latency estimate went stale gets one
    request per `explore_after`, so a recovered target is noticed again. Under latency and
    score any later candidate may be probed; under the other strategies only one the latency
    ceiling moved back (its estimate is all that keeps it from traffic, and nothing else would
    ever measure it again)."""
    tracker = signals.latency
    for position, i in enumerate(indices):
        eligible = ranked_by_latency or rows[i].skip == "ceiling"
        if position and eligible and tracker.claim_probe(rows[i].label, demand.streaming):
            return [i, *indices[:position], *indices[position + 1 :]]
    return indices


def _holder_first(
    route: Route,
    indices: list[int],
    rows: list[CandidateView] | None,
    signals: Signals,
    demand: Demand,
) -> list[int]:
    """The holder of the request's cached prefix first, if it is fit (see the module
    docstring); else the order unchanged. Assessed only when there is something to move."""
    label = demand.holder.label if demand.holder is not None else None
    candidates = route.candidates
    at = next((p for p, i in enumerate(indices) if candidates[i].target.health_label == label), 0)
    if not at:  # not a candidate, or already first
        return indices
    rows = rows or assess(route, signals, demand, with_cost=False)
    row = rows[indices[at]]
    others = [rows[i] for i in indices if i != indices[at] and rows[i].skip is None]
    bound = 1.0 + route.affinity_margin
    if row.skip is not None or _worse(row, others, route.strategy, bound):
        return indices
    return [indices[at], *indices[:at], *indices[at + 1 :]]


def _worse(row: CandidateView, others: list[CandidateView], strategy: str, bound: float) -> bool:
    """Whether `row` is worse than the best of `others` by more than the factor `bound`."""
    if not others:
        return False
    failures = min(_failures(r) for r in others)
    if _failures(row) > bound * failures:
        return True
    if strategy == "cost":
        costs = [r.cost_micros for r in others if r.cost_micros is not None]
        if row.cost_micros is None:  # unpriced (last under `cost`) while another is priced
            return bool(costs)
        return bool(costs) and row.cost_micros > bound * min(costs)
    if strategy != "latency":
        return False
    seen = [expected_latency(r.latency_s, r.error_rate) for r in others]
    best = min((v for v in seen if v is not None), default=None)
    mine = expected_latency(row.latency_s, row.error_rate)
    if mine is None or best is None:  # unseen: no evidence against either
        return False
    return mine > bound * best + AFFINITY_SLACK_S


def _failures(row: CandidateView) -> float:
    """Tries per answer at the row's error rate (core.routing.signals.expected_latency)."""
    return 1.0 / max(0.05, 1.0 - row.error_rate)


def _under_ceiling(indices: list[int], rows: list[CandidateView]) -> list[int]:
    """Candidates marked `ceiling` (core.routing.signals) after every other, order kept."""
    within = [i for i in indices if rows[i].skip != "ceiling"]
    return within + [i for i in indices if rows[i].skip == "ceiling"]
