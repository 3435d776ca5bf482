"""Circuit breakers for every target, shared across core replicas through the Store.

Each replica decides locally from its own traffic (core.breaker) and publishes an open
decision; every second it reads the others' decisions, so a target one replica has seen fail
is avoided by all. When the Store is unreachable the local breakers keep working alone.
"""

from __future__ import annotations

import logging
import time

from core.breaker import Breaker, BreakerPolicy, State
from core.state.store import Store
from shared.errors import FailureClass, GatewayError
from shared.periodic import Periodic

log = logging.getLogger("interlock.breakers")

SYNC_INTERVAL_S = 1.0
# Failures that say something about the target's health (not about the request).
UNHEALTHY = frozenset({FailureClass.TRANSIENT, FailureClass.TIMEOUT, FailureClass.RATE_LIMIT})


class BreakerBoard:
    def __init__(self, policy: BreakerPolicy, store: Store) -> None:
        self._policy = policy
        self._store = store
        self._breakers: dict[str, Breaker] = {}
        self._published: dict[str, float] = {}
        self._periodic = Periodic(SYNC_INTERVAL_S, self.sync)

    def _get(self, label: str) -> Breaker:
        breaker = self._breakers.get(label)
        if breaker is None:
            breaker = self._breakers[label] = Breaker(self._policy)
        return breaker

    def allow(self, label: str) -> bool:
        return self._get(label).allow(time.monotonic())

    def record(self, label: str, failure: FailureClass | None) -> None:
        self._get(label).record(failure not in UNHEALTHY, time.monotonic())

    def retry_after(self, label: str) -> float:
        return max(0.0, self._get(label).open_until - time.monotonic())

    def register(self, labels: list[str]) -> None:
        """Every configured target up front, so a replica learns of a circuit opened by
        another replica even before sending that target anything itself."""
        for label in labels:
            self._get(label)

    def labels(self) -> list[str]:
        return sorted(self._breakers)

    def state(self, label: str) -> State:
        return self._get(label).state

    async def sync(self) -> None:
        wall, mono = time.time(), time.monotonic()
        for label, breaker in list(self._breakers.items()):
            key = f"il:{{b:{label}}}:open"
            try:
                if breaker.state is State.OPEN and self._published.get(label) != breaker.open_until:
                    until_wall = wall + (breaker.open_until - mono)
                    await self._store.set(
                        key, repr(until_wall).encode(), max(0.001, breaker.open_until - mono)
                    )
                    self._published[label] = breaker.open_until
                elif breaker.state is State.CLOSED:
                    shared = await self._store.get(key)
                    if shared is not None and float(shared) > wall:
                        breaker.trip(mono, mono + (float(shared) - wall))
                        self._published[label] = breaker.open_until
            except (GatewayError, ValueError):
                return  # store unavailable (fail-closed) or garbage: stay local this round

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
