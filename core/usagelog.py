"""The usage log: one JSON line per request, written in batches.

Going through `logging` costs a LogRecord, locks and a write syscall per request; on the hot
path that is several percent of the core's CPU. Lines are built with orjson, buffered, and
flushed every 100 ms by the core's lifespan (written through at once when no flusher runs).
They never contain prompt or completion text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Any, BinaryIO

import orjson

FLUSH_INTERVAL_S = 0.1
PREFIX = b"interlock.usage "


class UsageLog:
    def __init__(self, stream: BinaryIO | None = None) -> None:
        self._stream = stream
        self._buffer: list[bytes] = []
        self._task: asyncio.Task[None] | None = None
        self.enabled = logging.getLogger("interlock.usage").isEnabledFor(logging.INFO)

    def refresh(self) -> None:
        """Re-read the level after logging is configured (the log is built at import)."""
        self.enabled = logging.getLogger("interlock.usage").isEnabledFor(logging.INFO)

    def write(self, line: dict[str, Any]) -> None:
        self._buffer.append(PREFIX + orjson.dumps(line) + b"\n")
        if self._task is None:
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

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            self.flush()

    def start(self) -> None:
        self.refresh()
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.flush()


USAGE_LOG = UsageLog()
