"""Shutdown that says what it waits for, and ends within `server.drain_timeout`.

On SIGTERM uvicorn stops accepting, lets every open request finish, then runs the app's
lifespan shutdown (the core's ledger flush, exporters, pools). It waits silently and, by
default, forever: a request that never ends, or a shutdown step that hangs, leaves a replica
that neither serves nor exits until the orchestrator kills it, and nobody can tell why.

`DrainingServer` bounds the wait for requests with the tier's `drain_timeout` (then the
requests still running are cancelled, as uvicorn does) and, while it waits, logs every
`REPORT_EVERY_S` (a quarter of a shorter drain) how many connections and requests are still
open; once, after the first
report, it also logs where each pending task of the process is suspended (file, line and
function of every frame: code locations only, never a value). The lifespan's own steps are
named by the tier (core/app.py logs a step that is slow).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import uvicorn

log = logging.getLogger("interlock.server")

REPORT_EVERY_S = 5.0


def where(task: asyncio.Task[Any]) -> str:
    """Where the task is suspended, outermost call first: `file:line function` for each
    coroutine it awaits (Task.get_stack gives only the outermost)."""
    chain: list[str] = []
    step: Any = task.get_coro()
    while step is not None and len(chain) < 16:
        frame = getattr(step, "cr_frame", None) or getattr(step, "ag_frame", None)
        if frame is None:
            break
        name = frame.f_code.co_filename.rsplit("/", 2)[-2:]
        chain.append(f"{'/'.join(name)}:{frame.f_lineno} {frame.f_code.co_name}")
        step = getattr(step, "cr_await", None) or getattr(step, "ag_await", None)
    return " > ".join(chain) or "(not a coroutine)"


class DrainingServer(uvicorn.Server):
    """uvicorn's server with a drain that reports its progress."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        reporter = asyncio.create_task(self._report(), name="interlock-drain-report")
        try:
            await super().shutdown(sockets)
        finally:
            reporter.cancel()

    async def _report(self) -> None:
        state = self.server_state
        drain = self.config.timeout_graceful_shutdown
        every = min(REPORT_EVERY_S, drain / 4) if drain else REPORT_EVERY_S
        described = False
        while True:
            await asyncio.sleep(every)
            log.warning(
                "shutdown: still waiting for %d connection(s) and %d request(s)",
                len(state.connections),
                len(state.tasks),
            )
            if not described:
                described = True
                current = asyncio.current_task()
                for task in asyncio.all_tasks():
                    if task is not current and not task.done():
                        log.warning("shutdown: pending %s at %s", task.get_name(), where(task))
