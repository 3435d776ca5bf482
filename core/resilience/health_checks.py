"""Active health checks of idle targets: off unless a route sets `health_check_interval`.

Why: the latency and score strategies only learn from traffic, so a target nobody sends to (a
cold fallback, one shunned while it was slow) has an estimate that only ages. A check is one
cheap request (one user word, `max_tokens: 1`, not streamed) through the target's own adapter
and transport, sent only when no replica has observed the target for an interval, at most once
per interval per target and replica. Its time feeds both latency estimates (time to a 1-token
answer: the time to first chunk, and a lower bound of a whole answer, which real traffic then
corrects) and its outcome the error rate. It never touches breakers or key-pool limits, and a
check costs money on a paid provider: that is why it is off by default.

Checks run in the background, concurrently, each bounded by CHECK_TIMEOUT_S; a failure that
is not the provider's (a bug) is logged and counted by the periodic guard (shared.periodic).
"""

from __future__ import annotations

import asyncio
import math
import time

from core.providers.adapters.base import JSON, ProviderError
from core.resilience.circuit_board import UNHEALTHY
from core.resilience.latency import LatencyTracker
from core.routing.registry import Candidate
from shared.periodic import Periodic

TICK_S = 1.0
CHECK_TIMEOUT_S = 30.0


def check_payload(model: str) -> JSON:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "ping"}],
        "max_tokens": 1,
        "stream": False,
    }


class HealthChecks:
    def __init__(
        self,
        targets: list[tuple[Candidate, float]],
        tracker: LatencyTracker,
        timeout_s: float = CHECK_TIMEOUT_S,
    ) -> None:
        self._targets = targets
        self._tracker = tracker
        self._timeout_s = timeout_s
        self._checked: dict[str, float] = {}  # label -> last check (monotonic); bounded by config
        self._periodic = Periodic("health_checks", TICK_S, self.run)
        self.sent = 0

    def due(self, now: float) -> list[Candidate]:
        """Targets no replica observed for their interval, not checked here within it."""
        out = []
        for candidate, interval in self._targets:
            label = candidate.target.health_label
            if now - self._tracker.last_seen(label) < interval:
                continue
            if now - self._checked.get(label, -math.inf) < interval:
                continue
            out.append(candidate)
        return out

    async def run(self) -> None:
        due = self.due(time.monotonic())
        if not due:
            return
        results = await asyncio.gather(*(self._check(c) for c in due), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result  # counted and logged by the periodic guard; the others recorded

    async def _check(self, candidate: Candidate) -> None:
        target = candidate.target
        label = target.health_label
        started = self._checked[label] = time.monotonic()
        self.sent += 1
        try:
            async with asyncio.timeout(self._timeout_s):
                await candidate.upstream.complete(check_payload(target.model), target)
        except TimeoutError:
            self._tracker.outcome(label, failed=True)
            return
        except ProviderError as error:
            self._tracker.outcome(label, failed=error.failure_class in UNHEALTHY)
            return
        elapsed = time.monotonic() - started
        self._tracker.observe(label, elapsed, streaming=True)
        self._tracker.observe(label, elapsed, streaming=False)
        self._tracker.outcome(label, failed=False)

    def start(self) -> None:
        if self._targets:
            self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
