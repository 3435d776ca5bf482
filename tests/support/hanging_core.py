"""A real core whose app never answers requests that carry a marker: a request stuck in
flight, for the drain tests (tests/test_drain.py); another marker blocks its event loop for
a moment first (what a busy replica does to the timing of its accepts).

Test-only: like tests/support/crashing_core.py it wraps core.app's app outermost, before the
hop check, so a raw request straight to the core's port with the marker in `idempotency-key`
hangs, and every other request is served normally. Run through the same launcher as the real
core (`Stack.start(core_app=HANGING_CORE)`).
"""

from __future__ import annotations

import asyncio
import time

from starlette.applications import Starlette

from core.app import create_app as create_core_app
from shared.config import Config
from tests.support.crashing_core import OnMarker

HANGING_CORE = "tests.support.hanging_core:create_app"
MARKER = "hang-the-core"
BLOCK_MARKER = "block-the-core"
BLOCK_S = 1.5


class HangOnMarker(OnMarker):
    marker = MARKER

    async def act(self) -> None:
        await asyncio.Event().wait()  # never set: this request never ends by itself


class BlockOnMarker(OnMarker):
    marker = BLOCK_MARKER

    async def act(self) -> None:
        time.sleep(BLOCK_S)  # deliberately blocks the loop; then the request goes on


def create_app(config: Config) -> Starlette:
    app = create_core_app(config)
    app.add_middleware(HangOnMarker)
    app.add_middleware(BlockOnMarker)
    return app
