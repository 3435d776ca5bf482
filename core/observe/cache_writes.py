"""Prompt-cache writes nobody reads: a prefix written again and again but never read costs the
write premium (1.25x-2x input) for nothing, which usually means the prefix is not stable (a
timestamp in the system prompt, tools in a different order) or the traffic too sparse for the TTL.

The rule, per target (its health label: configured names only, `<provider>/*` for tenant-named
models, so the map is bounded by the config and capped at MAX_TARGETS besides), in fixed windows
of WINDOW_S (the default cache TTL, five minutes): a window in which the target reported cache
writes and not one cache read counts its writing requests in
`interlock_prompt_cache_writes_unread_total{target}`. A window closes at the target's next
request after it, or at the next /metrics scrape, so an idle target's last window is counted too.
A read anywhere in the window clears it: with one target serving several prefixes the counter
under-reports rather than flags a healthy cache (no prefix identity is kept, no content ever).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

WINDOW_S = 300.0
MAX_TARGETS = 1024


@dataclass(slots=True)
class _Window:
    started: float
    writes: int = 0  # requests that wrote to the cache
    reads: int = 0  # requests that read from it


class CacheWrites:
    __slots__ = ("_open", "unread")

    def __init__(self) -> None:
        self._open: dict[str, _Window] = {}
        self.unread: dict[str, int] = {}

    def observe(self, target: str, read: int, written: int, now: float | None = None) -> None:
        """One served request's cache reads and writes (tokens) on `target`."""
        if read <= 0 and written <= 0:
            return
        now = time.monotonic() if now is None else now
        window = self._open.get(target)
        if window is not None and now - window.started >= WINDOW_S:
            self._close(target, window)
            window = None
        if window is None:
            if len(self._open) >= MAX_TARGETS:
                return
            window = self._open[target] = _Window(now)
        window.reads += read > 0
        window.writes += written > 0

    def flush(self, now: float | None = None) -> dict[str, int]:
        """Closes every window that has run its time; the unread counts, by target (0 for a
        target whose cache use is still in its first window)."""
        now = time.monotonic() if now is None else now
        for target, window in list(self._open.items()):
            if now - window.started >= WINDOW_S:
                self._close(target, window)
                del self._open[target]
        counts = dict(self.unread)
        for target in self._open:
            counts.setdefault(target, 0)
        return counts

    def _close(self, target: str, window: _Window) -> None:
        if window.writes and not window.reads:
            self.unread[target] = self.unread.get(target, 0) + window.writes
        elif target not in self.unread and len(self.unread) < MAX_TARGETS:
            self.unread[target] = 0  # the series exists once the target has used the cache


CACHE_WRITES = CacheWrites()
