"""Shutdown that says what it waits for, and ends within `server.drain_timeout`.

On SIGTERM uvicorn stops accepting, lets every open request finish, then runs the app's
lifespan shutdown (the core's ledger flush, exporters, pools). It waits silently and, by
default, forever: a request that never ends, or a shutdown step that hangs, leaves a replica
that neither serves nor exits until the orchestrator kills it, and nobody can tell why.

`DrainingServer` bounds the wait for requests with the tier's `drain_timeout` (then the
requests still running are cancelled, as uvicorn does) and, while it waits, logs every
`REPORT_EVERY_S` (a quarter of a shorter drain) how many connections and requests are still
open; once, after the first report, it also logs where each pending task of the process is
suspended (file, line and function of every frame, through coroutines and async generators:
code locations only, never a value), which names a lifespan step that hangs as well. It
tells a connection that joined after the drain began to end after its request, and, when
the launcher asks, ends the process soon after the shutdown is over, whatever still runs.
"""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import inspect
import logging
import socket
from typing import Any

import uvicorn

log = logging.getLogger("interlock.server")

REPORT_EVERY_S = 5.0
# From the end of the lifespan shutdown to the process's exit: asyncio cancels what is left and
# joins its executor's threads (milliseconds). Past this, something hangs there: every thread's
# stack is printed and the process exits (1), instead of waiting for the orchestrator's kill.
EXIT_WITHIN_S = 5.0
# How soon a connection that joined during the drain is told to end after its request.
LATE_EVERY_S = 0.05


def where(task: asyncio.Task[Any]) -> str:
    """Where the task is suspended, outermost call first: `file:line function` for each
    coroutine it awaits (Task.get_stack gives only the outermost)."""
    chain: list[str] = []
    step: Any = task.get_coro()
    while step is not None and len(chain) < 16:
        frame = getattr(step, "cr_frame", None) or getattr(step, "ag_frame", None)
        if frame is None:
            # An async generator's `asend` (an `async with` on an asynccontextmanager, an
            # `async for`) names no frame: its generator, which it refers to, does.
            step = next(filter(inspect.isasyncgen, gc.get_referents(step)), None)
            frame = step.ag_frame if step is not None else None
        if frame is None:
            break
        name = frame.f_code.co_filename.rsplit("/", 2)[-2:]
        chain.append(f"{'/'.join(name)}:{frame.f_lineno} {frame.f_code.co_name}")
        step = getattr(step, "cr_await", None) or getattr(step, "ag_await", None)
    return " > ".join(chain) or "(not a coroutine)"


class DrainingServer(uvicorn.Server):
    """uvicorn's server with a drain that reports its progress. With `exit_within_s` (the
    launcher's, never a server run inside another program), the process ends that soon after
    its shutdown completed, whatever still runs."""

    def __init__(self, config: uvicorn.Config, exit_within_s: float | None = None) -> None:
        super().__init__(config)
        self.exit_within_s = exit_within_s

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        reporter = asyncio.create_task(self._report(), name="interlock-drain-report")
        # uvicorn tells, synchronously, every connection it has now (below): these are told.
        told = set(self.server_state.connections)
        late = asyncio.create_task(self._tell_late(told), name="interlock-drain-late")
        try:
            await super().shutdown(sockets)
        finally:
            reporter.cancel()
            late.cancel()
        if self.exit_within_s is not None:
            faulthandler.dump_traceback_later(self.exit_within_s, exit=True)

    async def _tell_late(self, told: set[Any]) -> None:
        """Tells connections made after the shutdown began to end after their request.

        asyncio accepts a connection and makes its protocol a loop step or two later: one
        accepted just before the listener closed joins the server after uvicorn told every
        connection to finish. Untold, it answers with keep-alive, the edge's pool reuses it
        request after request, and the drain never ends (a rolling restart under load saw a
        core that did not exit). Each such connection is told, as uvicorn tells the others,
        once it has begun a request; one that never sends any is closed by its header timeout
        (shared/server_protocol.py)."""
        state = self.server_state
        while True:
            await asyncio.sleep(LATE_EVERY_S)
            for connection in list(state.connections):
                if connection not in told and getattr(connection, "cycle", None) is not None:
                    told.add(connection)
                    connection.shutdown()

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
