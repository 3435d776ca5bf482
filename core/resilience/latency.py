"""What the routing strategies know of each target's health: expected latency and error rate.

Per target (its health label), three exponentially weighted estimates: time to first chunk of
streams (`ttft`), time to a whole answer (`total`), and the failure rate of its tries (1 for a
failure that speaks for the target, 0 for a success; core.resilience.lease feeds it). Unseen
targets have no estimate, which the strategies read as "try it" (so each gets explored).

Why estimates age:
- An estimate not refreshed for `explore_after_s` is stale: the target may have recovered (or
  broken) since. One request per period (`claim_probe`) tries it first; that probe's
  observation replaces the stale value outright instead of being averaged into it, so a
  recovered target wins its traffic back after one probe.
- The error rate decays towards 0 with its age (half-life ERROR_HALF_LIFE_S), so a target that
  stopped getting traffic because it failed is not shunned forever.

Across core replicas (core.resilience.stats_sync): each replica publishes what it observed
itself (`own`) and folds in the others' (`merge_remote`); `estimate` reads the blend, where
each replica's value weighs by how fresh its last observation is (halving every
FRESHNESS_HALF_LIFE_S), so a slowdown one replica has just seen outweighs another's memory of
the target being fast.

Bounded: keys are health labels (configured targets and one `<provider>/*` per provider), and
the table is an LRU with a hard cap besides, so tenant-chosen model names can never grow it;
remote values are kept only for labels present here, from at most MAX_REPLICAS replicas.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field

ALPHA = 0.2  # weight of a new latency sample
ERROR_ALPHA = 0.1  # weight of a new success/failure in the error rate
ERROR_HALF_LIFE_S = 30.0
FRESHNESS_HALF_LIFE_S = 2.0
EXPLORE_AFTER_S = 10.0
MAX_ENTRIES = 1024
MAX_REPLICAS = 64  # other replicas' values kept per label (the freshest)
KINDS = ("ttft", "total", "errors")


@dataclass(slots=True)
class Ewma:
    """One estimate and when (monotonic) it last took an observation."""

    value: float
    at: float

    def update(self, sample: float, alpha: float, now: float, stale_after: float) -> None:
        if now - self.at > stale_after:
            self.value = sample  # a probe after a quiet spell: the old value says nothing now
        else:
            self.value += alpha * (sample - self.value)
        self.at = now


@dataclass(slots=True)
class TargetStats:
    """One label: this replica's own estimates, the other replicas' (by replica id) and when
    this replica last sent a probe to it."""

    own: dict[str, Ewma] = field(default_factory=dict)
    remote: dict[str, dict[str, Ewma]] = field(default_factory=dict)
    probed_at: float = -math.inf
    dirty: bool = False  # observed since the last publish


class LatencyTracker:
    """Latency and error estimates per label (the name stays: it began as latency only)."""

    def __init__(
        self, max_entries: int = MAX_ENTRIES, explore_after_s: float = EXPLORE_AFTER_S
    ) -> None:
        self._stats: OrderedDict[str, TargetStats] = OrderedDict()
        self._max = max_entries
        self.explore_after_s = explore_after_s

    def _entry(self, label: str) -> TargetStats:
        stats = self._stats.get(label)
        if stats is None:
            stats = self._stats[label] = TargetStats()
            if len(self._stats) > self._max:
                self._stats.popitem(last=False)
        else:
            self._stats.move_to_end(label)
        return stats

    def observe(self, label: str, seconds: float, streaming: bool = False) -> None:
        """A served try: time to its first chunk (streams) or to its whole answer."""
        now = time.monotonic()
        stats = self._entry(label)
        kind = "ttft" if streaming else "total"
        ewma = stats.own.get(kind)
        if ewma is None:
            stats.own[kind] = Ewma(seconds, now)
        else:
            ewma.update(seconds, ALPHA, now, self.explore_after_s)
        stats.dirty = True

    def outcome(self, label: str, failed: bool) -> None:
        """A try's verdict on its target: failed (the target's fault) or succeeded. The rate
        starts at 0 (one failure is not a 100% rate) and decays with time between tries."""
        now = time.monotonic()
        stats = self._entry(label)
        ewma = stats.own.get("errors")
        if ewma is None:
            ewma = stats.own["errors"] = Ewma(0.0, now)
        ewma.value *= math.pow(0.5, (now - ewma.at) / ERROR_HALF_LIFE_S)
        ewma.update(1.0 if failed else 0.0, ERROR_ALPHA, now, math.inf)
        stats.dirty = True

    def estimate(self, label: str, streaming: bool = False) -> float:
        """Expected seconds (0.0 when unseen: explored first)."""
        return self.expected(label, streaming) or 0.0

    def expected(self, label: str, streaming: bool = False) -> float | None:
        """Expected seconds to the first chunk (streams) or the answer; None when unseen."""
        stats = self._stats.get(label)
        if stats is None:
            return None
        return _blend(stats, "ttft" if streaming else "total", time.monotonic())

    def error_rate(self, label: str) -> float:
        """Share of recent tries that failed, in [0, 1], decayed with its age."""
        stats = self._stats.get(label)
        if stats is None:
            return 0.0
        now = time.monotonic()
        rate = _blend(stats, "errors", now)
        if rate is None:
            return 0.0
        age = now - _newest(stats, "errors")
        return max(0.0, min(1.0, rate * math.pow(0.5, age / ERROR_HALF_LIFE_S)))

    def last_seen(self, label: str) -> float:
        """When (monotonic) any replica last observed the label's latency; -inf if never."""
        stats = self._stats.get(label)
        if stats is None:
            return -math.inf
        return max(_newest(stats, "ttft"), _newest(stats, "total"))

    def claim_probe(self, label: str, streaming: bool = False) -> bool:
        """True for one request per `explore_after_s` when the label's estimate is stale
        (no replica observed it lately): that request tries it first."""
        stats = self._stats.get(label)
        if stats is None:
            return False
        now = time.monotonic()
        newest = _newest(stats, "ttft" if streaming else "total")
        if newest == -math.inf or now - newest <= self.explore_after_s:
            return False
        if now - stats.probed_at <= self.explore_after_s:
            return False
        stats.probed_at = now
        return True

    # --- sharing (core.resilience.stats_sync) ---------------------------------------------

    def labels(self) -> list[str]:
        return list(self._stats)

    def own(self, label: str, dirty_only: bool = True) -> dict[str, tuple[float, float]] | None:
        """This replica's estimates of `label` as kind -> (value, age in seconds), clearing
        its dirty mark; None when there is nothing (new) to publish."""
        stats = self._stats.get(label)
        if stats is None or not stats.own or (dirty_only and not stats.dirty):
            return None
        stats.dirty = False
        now = time.monotonic()
        return {kind: (e.value, now - e.at) for kind, e in stats.own.items()}

    def merge_remote(self, label: str, replicas: dict[str, dict[str, tuple[float, float]]]) -> None:
        """The other replicas' estimates of `label` (replica -> kind -> (value, age)),
        replacing what was known of them; ignored for a label this replica does not track."""
        stats = self._stats.get(label)
        if stats is None:
            return
        now = time.monotonic()
        freshest = sorted(replicas.items(), key=lambda item: _youngest(item[1]))
        stats.remote = {
            replica: {kind: Ewma(value, now - age) for kind, (value, age) in kinds.items()}
            for replica, kinds in freshest[:MAX_REPLICAS]
        }

    def track(self, labels: list[str]) -> None:
        """Configured labels up front, so estimates from other replicas are taken in before
        this replica has sent the target anything itself."""
        for label in labels:
            self._entry(label)

    def __len__(self) -> int:
        return len(self._stats)


def _youngest(kinds: dict[str, tuple[float, float]]) -> float:
    return min((age for _, age in kinds.values()), default=math.inf)


def _estimates(stats: TargetStats, kind: str) -> list[Ewma]:
    found = [stats.own[kind]] if kind in stats.own else []
    found.extend(kinds[kind] for kinds in stats.remote.values() if kind in kinds)
    return found


def _newest(stats: TargetStats, kind: str) -> float:
    return max((e.at for e in _estimates(stats, kind)), default=-math.inf)


def _blend(stats: TargetStats, kind: str, now: float) -> float | None:
    """Every replica's estimate, each weighted by the freshness of its last observation."""
    estimates = _estimates(stats, kind)
    if not estimates:
        return None
    if len(estimates) == 1:
        return estimates[0].value
    newest = max(e.at for e in estimates)
    weights = [math.pow(0.5, (newest - e.at) / FRESHNESS_HALF_LIFE_S) for e in estimates]
    return sum(w * e.value for w, e in zip(weights, estimates, strict=True)) / sum(weights)
