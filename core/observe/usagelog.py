"""The usage log: one JSON line per request (logger `interlock.usage`, in the envelope every
log line has: shared.logs), written in batches.

Going through `logging` costs a LogRecord, locks and a write syscall per request; on the hot
path that is several percent of the core's CPU. Lines are built with orjson, buffered, and
flushed every 100 ms by the core's lifespan (written through at once when no flusher runs).
They never contain prompt or completion text, and tenant-chosen names (the requested model) are
cut to MAX_NAME_CHARS with a digest of the whole, so a line has a bounded size.

What a stop can lose (tests/test_usage_durability_e2e.py): SIGTERM nothing (the server drains
requests in flight, streams included, before the lifespan's final flush); SIGKILL at most the
requests in flight (their lines are written as they end) and the lines of the last
FLUSH_INTERVAL_S, since every flush hands its lines to the OS at once.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from typing import Any, BinaryIO

import orjson

from shared.logs import envelope
from shared.periodic import Periodic

FLUSH_INTERVAL_S = 0.1
MAX_NAME_CHARS = 256
_KEPT = 200


def bounded_name(name: str | None) -> str | None:
    """`name` itself when short; else its first characters and a digest of the whole name,
    still distinct per name and greppable, at a fixed size."""
    if name is None or len(name) <= MAX_NAME_CHARS:
        return name
    digest = hashlib.blake2b(name.encode(errors="replace"), digest_size=8).hexdigest()
    return f"{name[:_KEPT]}...#{digest}"


class UsageLog:
    def __init__(self, stream: BinaryIO | None = None) -> None:
        self._stream = stream
        self._buffer: list[bytes] = []
        self._periodic = Periodic("usage_log_flush", FLUSH_INTERVAL_S, self._flush_async)
        self.enabled = logging.getLogger("interlock.usage").isEnabledFor(logging.INFO)

    def refresh(self) -> None:
        """Re-read the level after logging is configured (the log is built at import)."""
        self.enabled = logging.getLogger("interlock.usage").isEnabledFor(logging.INFO)

    def write(self, line: dict[str, Any]) -> None:
        """One request's line, in the envelope every log line has (shared.logs)."""
        entry = envelope(time.time(), "info", "interlock.usage", "request")
        entry.update(line)
        self._buffer.append(orjson.dumps(entry) + b"\n")
        if not self._periodic.running:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        data, self._buffer = b"".join(self._buffer), []
        stream = self._stream or sys.stderr.buffer
        try:
            stream.write(data)
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed or full log stream must never fail a request

    async def _flush_async(self) -> None:
        self.flush()

    def start(self) -> None:
        self.refresh()
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
        self.flush()


USAGE_LOG = UsageLog()
