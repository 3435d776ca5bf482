"""The ledger's writer: records appended on the hot path, written in batches off it.

`append` is a deque append (O(1), no I/O, no await). A guarded background job
(shared.periodic) runs every `flush_interval` and writes what is queued in batches of
`batch_size`, each one store transaction. While the store is down or slow, records stay
queued up to `queue_max`; beyond it the oldest go to the spill file (core.ledger.spill), which
is replayed first when the store answers again, so records land in the order they came. A
batch leaves memory only once it is written or spilled: a write cancelled half-way is written
again, and the store's idempotence on request id keeps it once. Shutdown (the core's lifespan,
i.e. SIGTERM) writes everything held, or spills it if the store cannot take it.

A record older than the retained horizon (its raw partition already dropped by retention:
a replay, or a queue held that long) is skipped by the store, since writing it again would
count it twice in the rollups (core.ledger.store); `interlock_ledger_expired_total` counts it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Coroutine
from pathlib import Path
from typing import TypeVar

from prometheus_client.core import Metric

from core.ledger.record import LedgerRecord
from core.ledger.spill import SpillFile
from core.ledger.store import LedgerStore
from core.observe.families import counter, gauge
from shared.config_ledger import LedgerConfig
from shared.periodic import Periodic

log = logging.getLogger("interlock.ledger")

RETENTION_EVERY_S = 3600.0
T = TypeVar("T")


class StoreUnavailable(Exception):
    """The store failed or timed out; what was being written is still held."""


class Ledger:
    def __init__(self, store: LedgerStore, config: LedgerConfig) -> None:
        self._store = store
        self._config = config
        self._queue: deque[LedgerRecord] = deque()
        self._spill = SpillFile(Path(config.spill_dir))
        self._opened = False
        self._job = Periodic("ledger-writer", config.flush_interval_s, self.flush)
        self._retention = Periodic("ledger-retention", RETENTION_EVERY_S, self.retain)
        self.written = 0  # records the store took as new
        self.spilled = 0  # records that went to the spill file
        self.failures = 0  # store calls that failed or timed out
        self.up = False  # the last store call succeeded

    def append(self, record: LedgerRecord) -> None:
        """The hot path: one deque append."""
        self._queue.append(record)

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def spill_pending(self) -> int:
        return self._spill.pending

    def start(self) -> None:
        self._job.start()
        self._retention.start()

    async def stop(self) -> None:
        """Everything held goes to the store, else to the spill file; then closes both."""
        await self._job.stop()
        await self._retention.stop()
        try:
            await self.flush()
        except StoreUnavailable:
            await self._spill_all()
        finally:
            await asyncio.to_thread(self._spill.close)
            await self._store.close()

    async def flush(self) -> None:
        """One run of the job: the spill file first (older records), then the queue as it
        was when the run began. Raises StoreUnavailable (counted by the job's guard) after
        moving what exceeds `queue_max` to disk."""
        try:
            await self._ready()
            await self._replay()
            for _ in range(-(-len(self._queue) // self._config.batch_size)):
                batch = list(itertools.islice(self._queue, self._config.batch_size))
                await self._write(batch)
                for _ in batch:
                    self._queue.popleft()
        except StoreUnavailable:
            await self._spill_overflow()
            raise

    async def _ready(self) -> None:
        if not self._opened:
            await asyncio.to_thread(self._spill.open)
            await self._call(self._store.open())
            self._opened = True

    async def _replay(self) -> None:
        size = self._config.batch_size
        while self._spill.pending:
            records, position = await asyncio.to_thread(self._spill.read, size)
            if records:
                await self._write(records)
            await asyncio.to_thread(self._spill.consumed, position, len(records))
            if not records:
                return

    async def _write(self, batch: list[LedgerRecord]) -> None:
        self.written += await self._call(self._store.write(batch))

    async def _call(self, call: Coroutine[object, object, T]) -> T:
        """A store call bounded by `write_timeout`; any failure is StoreUnavailable.
        `asyncio.timeout`, not `wait_for`: on Python 3.11 wait_for swallows a cancellation
        that arrives as the call completes, and the shutdown's cancel of the writer job was
        lost (the core never exited: tests/test_ledger_writer.py)."""
        try:
            async with asyncio.timeout(self._config.write_timeout_s):
                result = await call
        except (Exception, TimeoutError) as exc:
            self.failures += 1
            if self.up:
                log.error(
                    "the ledger store is unavailable (%s): records are held", type(exc).__name__
                )
            self.up = False
            raise StoreUnavailable from exc
        if not self.up:
            self.up = True
            log.info("the ledger store is available")
        return result

    async def _spill_overflow(self) -> None:
        """What exceeds `queue_max`, oldest first, to disk."""
        excess = len(self._queue) - self._config.queue_max
        if excess > 0:
            await self._to_disk([self._queue[i] for i in range(excess)])

    async def _spill_all(self) -> None:
        await self._to_disk(list(self._queue))

    async def _to_disk(self, records: list[LedgerRecord]) -> None:
        """Appends `records` (the queue's oldest) to the spill file, then drops them from
        memory. The file is opened here too: at shutdown the store may never have opened."""

        def append() -> None:
            self._spill.open()
            self._spill.append(records)

        await asyncio.to_thread(append)
        for _ in records:
            self._queue.popleft()
        self.spilled += len(records)
        log.warning("the ledger spilled %d records to disk", len(records))

    async def retain(self) -> None:
        """Retention: raw partitions older than `retention` are dropped whole."""
        if self._opened:
            cutoff = time.time() - self._config.retention_s
            await self._call(self._store.drop_before(cutoff))

    def metric_families(self) -> list[Metric]:
        """For /metrics: the queue, the spill file, what was written and how the store does."""
        return [
            gauge("interlock_ledger_queued", "Ledger records held in memory.", self.queued),
            gauge(
                "interlock_ledger_spill_pending",
                "Ledger records in the spill file.",
                self.spill_pending,
            ),
            counter(
                "interlock_ledger_written_total",
                "Ledger records written to the store.",
                self.written,
            ),
            counter(
                "interlock_ledger_spilled_total", "Ledger records spilled to disk.", self.spilled
            ),
            counter(
                "interlock_ledger_expired_total",
                "Ledger records skipped, older than retention.",
                self._store.expired,
            ),
            counter(
                "interlock_ledger_store_failures_total",
                "Ledger store calls that failed.",
                self.failures,
            ),
            gauge(
                "interlock_ledger_store_up",
                "Whether the last ledger store call succeeded.",
                int(self.up),
            ),
        ]
