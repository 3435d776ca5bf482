"""Where every request's outcome record goes: the metrics always, the ledger when it is on.

One record per request outcome is built in one place (the account stage; the response cache
for hits and coalesced followers) and handed here, so the ledger and the metrics count the same
requests the same way, and no endpoint has a metrics hook of its own.
"""

from __future__ import annotations

from core.ledger.record import LedgerRecord
from core.ledger.writer import Ledger
from core.observe.request_metrics import RequestMetrics


class Records:
    def __init__(self, metrics: RequestMetrics, ledger: Ledger | None = None) -> None:
        self.metrics = metrics
        self.ledger = ledger

    def append(self, record: LedgerRecord, operation: str) -> None:
        """`operation`: the GenAI operation name (`chat`, `embeddings`)."""
        self.metrics.observe(record, operation)
        if self.ledger is not None:
            self.ledger.append(record)
