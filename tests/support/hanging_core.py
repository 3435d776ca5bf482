"""A real core whose app never answers requests that carry a marker: a request stuck in
flight, for the drain tests (tests/test_drain.py); another marker blocks its event loop for
a moment first (what a busy replica does to the timing of its accepts), a third leaves a
task that never ends (what would hang the process's exit).

Test-only: like tests/support/crashing_core.py it wraps core.app's app outermost, before the
hop check, so a raw request straight to the core's port with the marker in `idempotency-key`
hangs, and every other request is served normally. Run through the same launcher as the real
core (`Stack.start(core_app=HANGING_CORE)`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from starlette.applications import Starlette

from core.app import create_app as create_core_app
from shared.config import Config
from tests.support.crashing_core import OnMarker

HANGING_CORE = "tests.support.hanging_core:create_app"
MARKER = "hang-the-core"
BLOCK_MARKER = "block-the-core"
BLOCK_S = 1.5
TASK_MARKER = "leave-a-task"


class HangOnMarker(OnMarker):
    marker = MARKER

    async def act(self) -> None:
        await asyncio.Event().wait()  # never set: this request never ends by itself


class BlockOnMarker(OnMarker):
    marker = BLOCK_MARKER

    async def act(self) -> None:
        time.sleep(BLOCK_S)  # noqa: ASYNC251 - blocks the loop on purpose; then it goes on


class StubbornTaskOnMarker(OnMarker):
    marker = TASK_MARKER

    async def act(self) -> None:
        # A task that outlives everything: asyncio's clean-up after the shutdown cancels it
        # and waits for it (the process's exit would hang there).
        _STUBBORN.add(asyncio.ensure_future(_stubborn()))


_STUBBORN: set[asyncio.Future[None]] = set()


async def _stubborn() -> None:
    """Never ends, and shrugs off every cancellation."""
    while True:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)


def create_app(config: Config) -> Starlette:
    app = create_core_app(config)
    app.add_middleware(HangOnMarker)
    app.add_middleware(BlockOnMarker)
    app.add_middleware(StubbornTaskOnMarker)
    return app
