"""The durable usage ledger: one record per request outcome, batched off the hot path.

`open_store` picks the store the configured URL names: SQLite (embedded) or PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

from core.ledger.store import LedgerStore


def store_for(url: str, partition: str) -> LedgerStore:
    """The store `url` names (checked at config load: sqlite:/// or postgresql://)."""
    if url.startswith("sqlite:///"):
        from core.ledger.sqlite import SqliteStore

        return SqliteStore(Path(url.removeprefix("sqlite:///")), partition)
    from core.ledger.postgres import PostgresStore  # asyncpg is only imported when used

    return PostgresStore(url, partition)
