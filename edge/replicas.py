"""Passive outlier detection for core replicas: stop sending to one that keeps failing.

A replica that fails `eject_after` attempts in a row (refused, connect timeout, reset, or no
acknowledgement within `core_ack_timeout`: see edge/corecall.py) rests for `eject_base`,
doubling on each ejection in a row up to `eject_max`. When its rest is over, the first request
that sees it is its probe: the replica rests for one more probe window meanwhile, so exactly
one request tests it; a success returns it to rotation (and resets the doubling), a failure
ejects it again for longer. A probe whose request never reports (the client left) simply lets
the window lapse, so no flag can stick.

Resting replicas are still tried last, soonest back first, when every replica in rotation
failed the request (or there is none): a guess beats a certain 502, and during a rolling
restart the replica that was just restarted is often still resting when the next one goes.
State is one small record per configured core URL (bounded by config); on Lambda it lives as
long as the container, which is what passive detection needs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence

log = logging.getLogger("interlock.edge")


class _Health:
    """One replica's record. A plain slotted class, not a dataclass: building a dataclass
    costs the edge's cold start about a millisecond, and nothing compares or prints these."""

    __slots__ = ("ejections", "failures", "probing", "resting_until")

    def __init__(self) -> None:
        self.failures = 0  # consecutive failed attempts
        self.ejections = 0  # consecutive ejections (no successful probe between)
        self.resting_until = 0.0  # monotonic time; 0: in rotation
        self.probing = False  # a request was let through to test it


class ReplicaHealth:
    def __init__(
        self,
        urls: Iterable[str],
        eject_after: int,
        eject_base_s: float,
        eject_max_s: float,
        probe_window_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._health = {url: _Health() for url in urls}
        self._eject_after = eject_after
        self._base_s = eject_base_s
        self._max_s = eject_max_s
        self._probe_window_s = probe_window_s
        self._clock = clock

    def choose(self, urls: Sequence[str]) -> list[str]:
        """The replicas to try, in order: those in rotation in the given (rotated) order, plus
        any whose rest is over (taken here as that replica's probe); then the resting ones."""
        now = self._clock()
        ready = [url for url in urls if self._ready(self._health[url], now)]
        resting = [url for url in urls if url not in ready]
        return ready + sorted(resting, key=lambda url: self._health[url].resting_until)

    def _ready(self, health: _Health, now: float) -> bool:
        if health.resting_until > now:
            return False
        if health.failures >= self._eject_after:
            health.resting_until = now + self._probe_window_s  # this request probes it
            health.probing = True
        return True

    def succeeded(self, url: str) -> None:
        health = self._health[url]
        if health.ejections:
            log.warning("core replica %s is back in rotation", url)
        health.failures = health.ejections = 0
        health.resting_until = 0.0
        health.probing = False

    def failed(self, url: str) -> None:
        """One failed attempt. Failures of requests that were already in flight when the
        replica was rested (or that tried it as a last resort) neither extend nor double its
        rest: only a failed probe, or failures once the rest is over, count as a repeat."""
        health = self._health[url]
        health.failures += 1
        now = self._clock()
        if health.failures < self._eject_after:
            return
        if health.resting_until > now and not health.probing:
            return
        health.probing = False
        health.ejections += 1
        rest = min(self._base_s * 2 ** min(health.ejections - 1, 30), self._max_s)
        health.resting_until = now + rest
        log.warning(
            "core replica %s rests %.0f s after %d failed attempts in a row",
            url,
            rest,
            health.failures,
        )

    def resting(self) -> list[str]:
        """The replicas out of rotation now (for tests and logs)."""
        now = self._clock()
        return [url for url, health in self._health.items() if health.resting_until > now]
