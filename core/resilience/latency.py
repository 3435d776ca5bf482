"""Observed latency per target, for the least-latency routing strategy.

An exponentially weighted moving average of time to first chunk (streams) or to the whole
response; unseen targets count as fastest so they get explored once. Keys are health labels
(configured targets and one `<provider>/*` per provider), and the table is an LRU with a hard
cap besides, so tenant-chosen model names can never grow it.
"""

from __future__ import annotations

from collections import OrderedDict

ALPHA = 0.2
MAX_ENTRIES = 1024


class LatencyTracker:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._ewma: OrderedDict[str, float] = OrderedDict()
        self._max = max_entries

    def observe(self, label: str, seconds: float) -> None:
        previous = self._ewma.get(label)
        if previous is None:
            self._ewma[label] = seconds
            if len(self._ewma) > self._max:
                self._ewma.popitem(last=False)
        else:
            self._ewma[label] = previous + ALPHA * (seconds - previous)
            self._ewma.move_to_end(label)

    def estimate(self, label: str) -> float:
        return self._ewma.get(label, 0.0)

    def __len__(self) -> int:
        return len(self._ewma)
