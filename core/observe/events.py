"""Counters of what the gateway decided on the way, for /metrics: failovers and retries (per
target: configured health labels), and rate-limit refusals (per limit kind). Module-level like
the other per-process counters (core.providers.parsing, shared.periodic): the code that decides
counts, one dict update, and the scrape renders them (core.observe.instruments)."""

from __future__ import annotations

from prometheus_client.core import Metric

from core.observe.instruments import Counter

FAILOVERS = Counter(
    "interlock_failovers_total",
    "Requests that moved on from a target to the next one, by the target left.",
    ("target",),
)
RETRIES = Counter(
    "interlock_retries_total",
    "Tries repeated on the same target after a retryable failure.",
    ("target",),
)
RATE_LIMITED = Counter(
    "interlock_rate_limited_total",
    "Requests refused by a rate limit: the tenant's requests or tokens per minute, or every "
    "key of a provider at its own limit.",
    ("limit",),
)


EVENTS = (FAILOVERS, RETRIES, RATE_LIMITED)


def event_families() -> list[Metric]:
    return [counter.family() for counter in EVENTS]
