"""`ledger`: where the usage ledger is stored and how its writer batches, queues and spills.

The default is an SQLite file under the state dir (`make run` needs nothing); several core
replicas share a PostgreSQL database (`url: postgresql://...`). The URL may carry a password:
it is kept out of the dataclass's repr.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared import configparse as cp
from shared.configparse import ConfigError

PARTITIONS = ("day", "month")
_DAY_S = 86400.0


@dataclass(frozen=True)
class LedgerConfig:
    enabled: bool = True
    # sqlite:///<path> or a bare path (embedded), or postgresql://... (several replicas).
    url: str = field(default="", repr=False)
    batch_size: int = 2000  # at most this many records per store write (one transaction)
    flush_interval_s: float = 0.2  # how long a record may wait in memory before a write
    # Records held in memory while the database is down or slow; beyond it they spill to disk.
    queue_max: int = 50_000
    spill_dir: str = ""  # default <state_dir>/ledger-spill
    retention_s: float = 400 * _DAY_S  # raw records older than this are dropped (rollups kept)
    partition: str = "day"  # the raw records' time partition: day or month
    write_timeout_s: float = 5.0  # a store write slower than this counts as a failure


_LEDGER = cp.keys_of(LedgerConfig)


def parse_ledger(raw: Any, state_dir: Path) -> LedgerConfig:
    path = "ledger"
    s = cp.section(raw, path, _LEDGER)
    d = LedgerConfig()
    url = cp.optional_string(s, "url", path) or f"sqlite:///{state_dir / 'ledger.sqlite3'}"
    if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise ConfigError(f"{path}.url: expected sqlite:///<path> or a postgresql:// URL")
    partition = cp.string(s, "partition", path, d.partition)
    if partition not in PARTITIONS:
        raise ConfigError(f"{path}.partition: expected day or month")
    interval = cp.duration(s, "flush_interval", path, d.flush_interval_s)
    if not 0 < interval <= 60:
        raise ConfigError(f"{path}.flush_interval: expected a duration from 1ms to 60s")
    retention = cp.duration(s, "retention", path, d.retention_s)
    if retention < _DAY_S:
        raise ConfigError(f"{path}.retention: at least 1d (whole partitions are dropped)")
    timeout = cp.duration(s, "write_timeout", path, d.write_timeout_s)
    if timeout <= 0:
        raise ConfigError(f"{path}.write_timeout: must be positive")
    return LedgerConfig(
        enabled=cp.boolean(s, "enabled", path, d.enabled),
        url=url,
        batch_size=cp.integer(s, "batch_size", path, d.batch_size, 1, 100_000),
        flush_interval_s=interval,
        queue_max=cp.integer(s, "queue_max", path, d.queue_max, 1, 10_000_000),
        spill_dir=cp.optional_string(s, "spill_dir", path) or str(state_dir / "ledger-spill"),
        retention_s=retention,
        partition=partition,
        write_timeout_s=timeout,
    )
