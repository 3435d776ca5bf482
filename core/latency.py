"""Observed latency per target, for the least-latency routing strategy.

An exponentially weighted moving average of time to first chunk (streams) or to the whole
response; unseen targets count as fastest so they get explored once.
"""

from __future__ import annotations

ALPHA = 0.2


class LatencyTracker:
    def __init__(self) -> None:
        self._ewma: dict[str, float] = {}

    def observe(self, label: str, seconds: float) -> None:
        previous = self._ewma.get(label)
        self._ewma[label] = seconds if previous is None else previous + ALPHA * (seconds - previous)

    def estimate(self, label: str) -> float:
        return self._ewma.get(label, 0.0)
