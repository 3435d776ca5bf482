"""Work done for a client stops when the client leaves: one watcher for both tiers.

The edge (waiting for a core) and the core (running the pipeline's stages) each run the work
for one request in the request's own task and give it to `watched`. Once the request has run
`WATCH_AFTER_S`, a small task parks on the ASGI receive channel (the body was read already, so
the next message can only be `http.disconnect`) and cancels the request's task when the client
leaves; the cancellation is absorbed and `left()` answers instead. Requests answered sooner
cost a dict entry under the loop's one timer, never a task nor a timer of their own: most
requests are fast, and a task each was most of the watching cost (measured: about 20 µs
against 4 µs a request), a timer each most of the rest (~4 µs).

Work that others wait on may go on without its client: `keep`, given, is asked when the client
leaves (with the cancel to call later) and answers whether the work goes on for now (a
coalesced leader whose followers wait: core.cache.follow); the cancel is then the caller's,
once nobody waits any more, and a no-op once the work has ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeAlias, TypeVar

from starlette.types import Receive

T = TypeVar("T")
L = TypeVar("L")

# A client leaving is noticed at most this much later; requests answered sooner start no task.
WATCH_AFTER_S = 0.05
# Asked when the client leaves, with the work's cancel: True keeps the work going (see above).
Keep: TypeAlias = Callable[[Callable[[], None]], Awaitable[bool]]


class _Sweeper:
    """One event loop's watches not started yet, oldest first (a dict keeps insertion order,
    and each is due WATCH_AFTER_S after it was added), under one timer: a request adds and
    removes a dict entry instead of making and cancelling a timer (~4 us a request)."""

    __slots__ = ("due", "loop", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.due: dict[ClientWatch, float] = {}
        self.timer: asyncio.TimerHandle | None = None

    def add(self, watch: ClientWatch) -> None:
        self.due[watch] = self.loop.time() + WATCH_AFTER_S
        if self.timer is None:
            self.timer = self.loop.call_later(WATCH_AFTER_S, self._sweep)

    def _sweep(self) -> None:
        self.timer = None
        now = self.loop.time()
        while self.due:
            watch, due = next(iter(self.due.items()))
            if due > now + 0.001:
                self.timer = self.loop.call_at(due, self._sweep)
                return
            del self.due[watch]
            watch.start()


_SWEEPER: _Sweeper | None = None


def _sweeper(loop: asyncio.AbstractEventLoop) -> _Sweeper:
    """This loop's sweeper (a process runs one loop; tests may run several, one at a time)."""
    global _SWEEPER
    sweeper = _SWEEPER
    if sweeper is None or sweeper.loop is not loop:
        sweeper = _SWEEPER = _Sweeper(loop)
    return sweeper


class ClientWatch:
    """Cancels the current task if the client disconnects before `stop`."""

    __slots__ = ("_keep", "_receive", "_stopped", "_sweeper", "_task", "_watcher", "left")

    def __init__(self, receive: Receive, keep: Keep | None = None) -> None:
        self.left = False
        self._keep = keep
        self._receive = receive
        self._stopped = False
        self._task = asyncio.current_task()
        self._watcher: asyncio.Future[None] | None = None
        self._sweeper = _sweeper(asyncio.get_running_loop())
        self._sweeper.add(self)

    def start(self) -> None:
        """WATCH_AFTER_S have passed (the sweeper calls this): watch the channel now."""
        self._watcher = asyncio.ensure_future(self._watch(self._receive))

    async def _watch(self, receive: Receive) -> None:
        try:
            while (await receive())["type"] != "http.disconnect":
                pass  # the body's end (read already): keep listening
        except Exception:
            return  # no receive channel (a request built in a test): nothing to watch
        if self._task is not None and not self._stopped:
            self.left = True
            if self._keep is not None and await self._kept():
                return  # goes on for others: `cancel` is theirs to call
            self.cancel()

    async def _kept(self) -> bool:
        """`keep`'s answer; a keeper that fails keeps nothing (the work is cancelled)."""
        assert self._keep is not None
        try:
            return await self._keep(self.cancel)
        except Exception:
            return False

    def cancel(self) -> None:
        """The work cancelled, unless it has ended."""
        if self._task is not None and not self._stopped:
            self._task.cancel()

    def stop(self) -> None:
        """The work is done (the answer is the server's to send now): stop watching."""
        self._stopped = True
        self._sweeper.due.pop(self, None)
        if self._watcher is not None:
            self._watcher.cancel()
        # The task's frames hold this watch: references back to them would make a cycle that
        # outlives the request until the cyclic collector's older passes.
        self._task = self._watcher = None


async def watched(
    receive: Receive, work: Awaitable[T], left: Callable[[], L], keep: Keep | None = None
) -> T | L:
    """`work`, awaited in this task; `left()` if the client disconnected first (the work was
    cancelled where it stood, at once or, kept, later). A cancellation from elsewhere
    (shutdown) propagates."""
    watch = ClientWatch(receive, keep)
    try:
        return await work
    except asyncio.CancelledError:
        if not watch.left:
            raise
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        return left()
    finally:
        watch.stop()
