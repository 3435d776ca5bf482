"""A background task that runs a coroutine every N seconds until stopped, and survives it.

Every periodic job in both tiers (settling token usage, syncing breakers, flushing the usage
log, refreshing JWKS and revocation lists) has the same life: started in the app's lifespan,
cancelled on shutdown. A job that raises must not end that life: an unguarded task died on the
first unexpected exception, silently, still reported itself running, and re-raised at
shutdown, which skipped the final usage flush. So a failure is logged (job name, exception
type and where it was raised; never the exception's message, which may carry a URL or a key),
counted per job (the core exports the counts on /metrics), and the job runs again on its next
interval. stop() never raises a job's exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections.abc import Awaitable, Callable

log = logging.getLogger("interlock.periodic")

# A job that keeps failing logs once per this many seconds (every failure is still counted).
LOG_EVERY_S = 60.0

_failures: dict[str, int] = {}

# A job still running this long after its cancel is cancelled again.
RECANCEL_AFTER_S = 0.1


def failure_counts() -> dict[str, int]:
    """Failures per job name in this process, every constructed job listed (0 if none).
    Names are fixed by the code, so the set is bounded."""
    return dict(_failures)


def _origin(exc: BaseException) -> str:
    """`file:line in function` of the innermost frame: where, without what (no values)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown location"
    frame = frames[-1]
    return f"{frame.filename}:{frame.lineno} in {frame.name}"


class Periodic:
    def __init__(self, name: str, interval_s: float, job: Callable[[], Awaitable[object]]) -> None:
        self.name = name
        self.interval_s = interval_s
        self._job = job
        self._task: asyncio.Task[None] | None = None
        self._streak = 0  # consecutive failures
        self._logged_at = -LOG_EVERY_S
        _failures.setdefault(name, 0)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def failures(self) -> int:
        return _failures[self.name]

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self._job()
            except Exception as exc:  # the guard: any failure is logged and counted
                self._failed(exc)
            else:
                if self._streak:
                    log.warning(
                        "background job %s recovered after %d failures", self.name, self._streak
                    )
                    self._streak = 0

    def _failed(self, exc: Exception) -> None:
        _failures[self.name] += 1
        self._streak += 1
        now = time.monotonic()
        if self._streak == 1 or now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            log.error(
                "background job %s failed (%s at %s; %d in a row); next run in %g s",
                self.name,
                type(exc).__name__,
                _origin(exc),
                self._streak,
                self.interval_s,
            )

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"periodic:{self.name}")

    async def stop(self) -> None:
        """Cancels the job and waits for it; whatever it raised stays with it, so the owner's
        final action (a last flush) always runs after this."""
        task, self._task = self._task, None
        if task is None:
            return
        # A job may swallow the cancel (Python 3.11's `asyncio.wait_for` does when its call
        # completes as the cancel comes; so may a library): it is cancelled again at its next
        # await, never waited for without end (a core that never exited, tests/test_periodic.py).
        task.cancel()
        while not (await asyncio.wait({task}, timeout=RECANCEL_AFTER_S))[0]:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            task.result()
