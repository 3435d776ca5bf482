"""Token-bucket arithmetic, shared by the in-memory store and mirrored by the Redis Lua script.

A bucket holds up to `capacity` units and refills at `rate` units a second. A take of several
buckets is all-or-nothing, so a request never spends its tenant's request budget when its
token budget says no. Settling actual usage later may push a bucket below zero: that debt is
paid back before anything else is admitted, which bounds overshoot to one request's estimate.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BucketSpec:
    key: str
    capacity: float
    rate: float  # units per second
    cost: float
    # A pending settlement applied before the take, admitted or not (charge > 0, refund < 0):
    # it rides along so settling never costs a round trip of its own.
    settle: float = 0.0
    # Taken too when every bucket of the take still holds it after `cost` (all or none of a
    # group's extras): a lease the caller spends locally (core.limits.leases).
    extra: float = 0.0


@dataclass(frozen=True, slots=True)
class TakeResult:
    allowed: bool
    retry_after_s: float  # 0 when allowed
    remaining: tuple[float, ...]  # per bucket, after the take (or unchanged when refused)
    granted: bool = False  # the specs' extras were taken too (`remaining` is after them)


def refill(tokens: float, last: float, now: float, capacity: float, rate: float) -> float:
    return min(capacity, tokens + max(0.0, now - last) * rate)


def take(state: dict[str, tuple[float, float]], specs: list[BucketSpec], now: float) -> TakeResult:
    """Mutates `state` (key -> (tokens, last_update)) only when every bucket allows the take."""
    levels = []
    wait = 0.0
    for spec in specs:
        tokens, last = state.get(spec.key, (spec.capacity, now))
        level = refill(tokens, last, now, spec.capacity, spec.rate)
        if spec.settle:
            level = min(spec.capacity, level - spec.settle)
            state[spec.key] = (level, now)
        levels.append(level)
        # A cost above capacity is admitted from a full bucket (into debt), never refused forever.
        needed = min(spec.cost, spec.capacity)
        if level < needed:
            wait = max(wait, (needed - level) / spec.rate if spec.rate > 0 else float("inf"))
    if wait > 0:
        return TakeResult(False, wait, tuple(levels))
    granted = any(spec.extra for spec in specs) and all(
        level - spec.cost >= spec.extra for spec, level in zip(specs, levels, strict=True)
    )
    remaining = []
    for spec, level in zip(specs, levels, strict=True):
        left = level - spec.cost - (spec.extra if granted else 0.0)
        state[spec.key] = (left, now)
        remaining.append(left)
    return TakeResult(True, 0.0, tuple(remaining), granted)


def adjust(
    state: dict[str, tuple[float, float]],
    key: str,
    delta: float,
    capacity: float,
    rate: float,
    now: float,
) -> float:
    """Charge (delta > 0) or refund (delta < 0) after the fact; may go negative (debt)."""
    tokens, last = state.get(key, (capacity, now))
    level = refill(tokens, last, now, capacity, rate) - delta
    level = min(capacity, level)
    state[key] = (level, now)
    return level


def take_first(
    state: dict[str, tuple[float, float]], groups: list[list[BucketSpec]], now: float
) -> tuple[int, TakeResult]:
    """The first group (e.g. a key's request and token buckets) that admits its take, or -1
    with the shortest wait among them. Pending settlements in every group are applied."""
    shortest = float("inf")
    last = TakeResult(False, shortest, ())
    for index, specs in enumerate(groups):
        result = take(state, specs, now)
        if result.allowed:
            return index, result
        shortest = min(shortest, result.retry_after_s)
        last = result
    return -1, TakeResult(False, shortest, last.remaining)
