"""Ordering by strategy: the order in which one request tries a route's candidates.

`fallback` keeps the configured order; `weighted` draws a random permutation, heavier targets
more likely earlier (each next target picked in proportion to its weight among those left);
`least_latency` puts the fastest observed first (unseen targets count as fastest, so each gets
explored). The route itself is reordered, before any API's planner runs, so chat, messages and
embeddings all follow the same strategy, and a planner only has to keep route order. Since a
weighted permutation restricted to any subset is again a weighted permutation of that subset,
ordering before planning skips nothing the planner would have drawn differently.
"""

from __future__ import annotations

import random
from dataclasses import replace

from core.resilience.latency import LatencyTracker
from core.routing.registry import Route


def order(route: Route, latency: LatencyTracker, rng: random.Random) -> Route:
    """`route` with its candidates (and their weights) in this request's order."""
    count = len(route.candidates)
    if count < 2 or route.strategy == "fallback":
        return route
    weights = route.weights or (1.0,) * count
    if route.strategy == "least_latency":
        labels = [c.target.health_label for c in route.candidates]
        indices = sorted(range(count), key=lambda i: latency.estimate(labels[i]))
    else:
        remaining, indices = list(range(count)), []
        while remaining:
            pick = rng.choices(range(len(remaining)), [weights[i] for i in remaining])[0]
            indices.append(remaining.pop(pick))
    return replace(
        route,
        candidates=tuple(route.candidates[i] for i in indices),
        weights=tuple(weights[i] for i in indices),
    )
