"""Latency and error estimates shared across core replicas through the Store.

Every SYNC_INTERVAL_S, in the background (never on a request's path), one batched Store call
(`Store.share`: one script per label, pipelined into one write with Redis) publishes what this
replica observed since the last round and reads every other replica's values for each label
(core.resilience.latency blends them by freshness). Records are timed by the Store's own
clock, so replicas' clocks need not agree.

Staleness bound: an observation on one replica reaches another's estimates within
2 x SYNC_INTERVAL_S (published at the observer's next round, read at the reader's next round),
plus one Store round trip. A replica that stops publishing (stopped, or no traffic) drops out
of the shared record after STALE_AFTER_S; until then its values count with their true age.

When the Store is unreachable (fail_closed) or answers garbage, the round is skipped and each
replica goes on with its own observations.
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson
from prometheus_client.core import Metric

from core.observe.families import counter, gauges
from core.resilience.latency import KINDS, LatencyTracker
from core.state.store import Store
from shared.errors import GatewayError
from shared.periodic import Periodic

SYNC_INTERVAL_S = 1.0
STALE_AFTER_S = 60.0


def _key(label: str) -> str:
    return f"il:{{l:{label}}}:stats"


class StatsSync:
    def __init__(
        self, tracker: LatencyTracker, store: Store, interval_s: float = SYNC_INTERVAL_S
    ) -> None:
        self._tracker = tracker
        self._store = store
        self.replica = secrets.token_hex(6)  # this process, in the shared records
        self._periodic = Periodic("latency_sync", interval_s, self.sync)

    async def sync(self) -> None:
        tracker = self._tracker
        labels = tracker.labels()
        if not labels:
            return
        entries = []
        for label in labels:
            own = tracker.own(label)
            entries.append((_key(label), orjson.dumps(own) if own is not None else None))
        try:
            records = await self._store.share(entries, self.replica, STALE_AFTER_S)
        except (GatewayError, ValueError):
            return  # store unavailable (fail-closed) or garbage: stay local this round
        for label, record in zip(labels, records, strict=True):
            others = {}
            for member, (age, raw) in record.items():
                if member == self.replica:
                    continue
                kinds = _decode(raw, age)
                if kinds:
                    others[member] = kinds
            tracker.merge_remote(label, others)

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()


def _decode(raw: bytes, published_age: float) -> dict[str, tuple[float, float]]:
    """A member's {kind: [value, age at publish]}, aged by the time since it was published;
    anything malformed is left out (another version, or garbage, never breaks a round)."""
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(data, dict):
        return {}
    out = {}
    for kind in KINDS:
        pair = data.get(kind)
        if (
            isinstance(pair, list)
            and len(pair) == 2
            and all(type(v) in (int, float) and v >= 0 for v in pair)
        ):
            out[kind] = (float(pair[0]), float(pair[1]) + published_age)
    return out


def metric_families(tracker: LatencyTracker, health_checks_sent: int) -> list[Metric]:
    """Each label's blended estimates (what the strategies read) and the health checks sent.
    Labels are configured health labels only (bounded by the config)."""
    latency: dict[tuple[str, str], float] = {}
    rates: dict[tuple[str], float] = {}
    for label in tracker.labels():
        for kind, streaming in (("ttft", True), ("total", False)):
            value = tracker.expected(label, streaming)
            if value is not None:
                latency[(label, kind)] = value
        rates[(label,)] = tracker.error_rate(label)
    return [
        gauges(
            "interlock_target_latency_seconds",
            "Expected latency per target (all replicas).",
            ("target", "kind"),
            latency.items(),
        ),
        gauges(
            "interlock_target_error_rate",
            "Recent share of failed tries per target.",
            ("target",),
            rates.items(),
        ),
        counter(
            "interlock_health_checks_total",
            "Active health checks sent by this replica.",
            health_checks_sent,
        ),
    ]
