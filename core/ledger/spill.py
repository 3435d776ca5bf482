"""The writer's overflow on disk: an append-only file of records (one JSON line each) that the
database could not take yet, fsync'd per batch, replayed in order when it returns.

Replay is at-least-once (a crash between a write and the file's truncation replays again) and
the stores are idempotent on request id, so every record lands exactly once. A process owns
its file through an exclusive lock: replicas sharing a state dir each take the first free
name, and a restarted process takes its file back and replays what its predecessor left.
Every method blocks: the writer calls them in a thread.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import IO

from core.ledger import codec
from core.ledger.record import LedgerRecord

log = logging.getLogger("interlock.ledger")

MAX_FILES = 16  # processes sharing one spill dir


class SpillFile:
    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._file: IO[bytes] | None = None
        self.path: Path | None = None
        self.offset = 0  # where replay continues
        self.pending = 0  # records in the file not replayed yet

    def open(self) -> None:
        """Locks a spill file of our own, drops a torn last line (a crash mid-append) and
        counts what it holds."""
        if self._file is not None:
            return
        self._directory.mkdir(parents=True, exist_ok=True)
        for n in range(MAX_FILES):
            path = self._directory / ("ledger.spill" if n == 0 else f"ledger.{n}.spill")
            handle = path.open("a+b")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            self._file, self.path = handle, path
            self._recover(handle)
            return
        raise RuntimeError("every ledger spill file is locked by another process")

    def _recover(self, handle: IO[bytes]) -> None:
        handle.seek(0)
        data = handle.read()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            handle.truncate(end)
            log.warning("dropped a torn last line of the ledger spill file")
        self.pending = data.count(b"\n")
        self.offset = 0

    def append(self, records: list[LedgerRecord]) -> None:
        handle = self._opened()
        handle.seek(0, os.SEEK_END)
        handle.write(b"".join(codec.dumps(r) for r in records))
        handle.flush()
        os.fsync(handle.fileno())
        self.pending += len(records)

    def read(self, limit: int) -> tuple[list[LedgerRecord], int]:
        """Up to `limit` records from the replay position, and the position after them."""
        handle = self._opened()
        handle.seek(self.offset)
        records: list[LedgerRecord] = []
        position = self.offset
        while len(records) < limit:
            line = handle.readline()
            if not line:
                break
            position += len(line)
            try:
                records.append(codec.loads(line))
            except (ValueError, KeyError, TypeError):
                log.error("skipped an unreadable line of the ledger spill file")
        return records, position

    def consumed(self, position: int, count: int) -> None:
        """Records up to `position` are in the database; an emptied file is truncated."""
        handle = self._opened()
        self.offset = position
        self.pending = max(0, self.pending - count)
        if position >= handle.seek(0, os.SEEK_END):
            handle.truncate(0)
            handle.flush()
            os.fsync(handle.fileno())
            self.offset = 0
            self.pending = 0

    def _opened(self) -> IO[bytes]:
        if self._file is None:
            raise RuntimeError("the spill file is not open")
        return self._file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()  # releases the lock
            self._file = None
