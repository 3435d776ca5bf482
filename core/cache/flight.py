"""A coalesced flight (core.cache.coalesce): one leader's answer as it is made, its start
(the response's media type and what served it), its chunks in order, and its end, read by
its followers from the first chunk, so one that joins mid-stream gets what it missed, then
the rest live. Who still reads it is counted, so a leader whose client left knows whether
to keep its upstream call going (core.cache.follow)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

PENDING, OPEN, DONE, CUT, RETRY = "pending", "open", "done", "cut", "retry"
_ENDED = frozenset((DONE, CUT, RETRY))


class Flight:
    """One leader's answer as it comes. `state`: pending (not answered yet), open (answered:
    `meta` is set, chunks come), done, cut (ended early: followers that started get what was
    sent), retry (ended without an answer to share: followers run on their own).

    `readers`: this process's followers still reading it; `remote`: the other replicas'
    (their polls, as the lock last counted them). While either is left, a leader whose
    client leaves mid-stream keeps the upstream call going for them (core.cache.follow);
    `on_unread` stops that once the last one is gone; `ask` (a leader's, with a shared
    store) hears the other replicas' count at once, when it matters: before giving up."""

    __slots__ = (
        "_changed",
        "_milestone",
        "ask",
        "chunks",
        "max_bytes",
        "meta",
        "on_end",
        "on_milestone",
        "on_unread",
        "readers",
        "remote",
        "size",
        "state",
        "usage",
    )

    def __init__(self, max_bytes: int) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.max_bytes = max_bytes
        self.state = PENDING
        self.meta: dict[str, Any] = {}
        self.usage: dict[str, Any] | None = None
        self.on_end: Callable[[], None] | None = None  # the registry forgets it
        self.on_milestone: Callable[[], None] | None = None  # opened or ended
        self._changed: asyncio.Event | None = None  # made only when someone waits
        self._milestone: asyncio.Event | None = None  # the same, for start and end only
        self.readers = 0
        self.remote = 0
        self.on_unread: Callable[[], None] | None = None
        self.ask: Callable[[], Awaitable[None]] | None = None

    @property
    def ended(self) -> bool:
        return self.state in _ENDED

    @property
    def followed(self) -> bool:
        return self.readers > 0 or self.remote > 0

    def leave(self) -> None:
        """A local follower is done reading."""
        self.readers -= 1
        self._unread()

    def heard(self, remote: int) -> None:
        """The other replicas' followers, as the lock counts them."""
        self.remote = remote
        self._unread()

    def _unread(self) -> None:
        if not self.followed and self.on_unread is not None:
            self.on_unread()

    def _notify(self, milestone: bool = False) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None
        if milestone:
            if self._milestone is not None:
                self._milestone.set()
                self._milestone = None
            if self.on_milestone is not None:
                self.on_milestone()

    def start(self, meta: dict[str, Any]) -> None:
        if self.state == PENDING:
            self.meta = meta
            self.state = OPEN
            self._notify(milestone=True)

    def add(self, chunk: bytes) -> None:
        if self.state != OPEN or not chunk:
            return
        self.size += len(chunk)
        if self.size > self.max_bytes:  # too large to hold for followers: they get a cut
            self.end(CUT)
            return
        self.chunks.append(chunk)
        self._notify()

    def end(self, state: str, usage: dict[str, Any] | None = None) -> None:
        """The flight's end; `retry` only before it opened (followers may have started)."""
        if self.ended:
            return
        if state == RETRY and self.state == OPEN:
            state = CUT
        self.state = state
        self.usage = usage
        # The hooks of a running flight go with its end: their closures hold the flight, and
        # kept they would make it a reference cycle that only a full collection frees.
        on_end, self.on_end, self.ask = self.on_end, None, None
        self._notify(milestone=True)
        if on_end is not None:
            on_end()

    def abandon(self) -> None:
        """The leader's request ended without answering (an error, a cancellation)."""
        if self.state == PENDING:
            self.end(RETRY)

    def abandoned(self, _task: object) -> None:
        """`abandon`, as the leader's task's done callback."""
        self.abandon()

    async def changed(self, timeout_s: float) -> None:
        """Until the next change, or `timeout_s`."""
        if self._changed is None:
            self._changed = asyncio.Event()
        await _until(self._changed, timeout_s)

    async def milestone(self, timeout_s: float) -> None:
        """Until the flight opens or ends (not at each chunk), or `timeout_s`."""
        if self._milestone is None:
            self._milestone = asyncio.Event()
        await _until(self._milestone, timeout_s)

    async def opened(self, deadline: float) -> bool:
        """True once the leader answered (then its chunks follow); False if it ended without
        answering, or the wait outlasted `deadline` (monotonic): the follower runs alone."""
        while self.state == PENDING:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await self.changed(left)
        return self.state != RETRY

    async def read(self, idle_s: float) -> AsyncIterator[bytes]:
        """Every chunk from the first, then live ones, until the flight ends or nothing
        happens for `idle_s` (a stream's idle timeout: a long stream is not cut)."""
        seen = 0
        while True:
            if seen < len(self.chunks):
                chunk = b"".join(self.chunks[seen:])
                seen = len(self.chunks)
                yield chunk
                continue
            if self.ended:
                return
            await self.changed(idle_s)
            if seen == len(self.chunks) and not self.ended:
                return


async def _until(event: asyncio.Event, timeout_s: float) -> None:
    """asyncio.timeout, not wait_for: no task made per wait (a leader waits on every miss)."""
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return
