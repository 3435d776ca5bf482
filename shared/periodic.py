"""A background task that runs a coroutine every N seconds until stopped.

Every periodic job in both tiers (settling token usage, syncing breakers, flushing the usage
log, refreshing keys) has the same life: started in the app's lifespan, cancelled on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


class Periodic:
    def __init__(self, interval_s: float, job: Callable[[], Awaitable[object]]) -> None:
        self.interval_s = interval_s
        self._job = job
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self._job()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
