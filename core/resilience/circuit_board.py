"""Circuit breakers for every target, shared across core replicas through the Store.

Each replica decides locally from its own traffic (core.resilience.circuit) and publishes an open
decision; every second it reads the others' decisions (one Store round trip for all of them),
so a target one replica has seen fail is avoided by all. When the Store is unreachable the
local breakers keep working alone.

Bounded: breakers exist for configured targets (registered at start-up) and, for tenant-named
`provider/<any model>` targets, one per provider (`<provider>/*`, see Target.health_label); any
other label lives in a small LRU, so no tenant input can grow this board.

Attribution (why a failure counts): 429/503/529, timeouts and connection-level failures are the
target's own and always count. Any other upstream 5xx may be caused by the request's content
(a malformed image, a prompt that crashes the model server): it is attributed to the tenant
that sent it and only counts once two tenants fail in the same window (core.resilience.circuit).
Auth and quota failures say the target answered (they count as successes; the key pool rests the
key). The request's own failures (client errors, content filters, context length) record nothing:
like a cancelled attempt, they only give back a half-open probe slot (core.resilience.lease).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from core.observe import context as requestctx
from core.providers.adapters.base import ProviderError
from core.resilience.circuit import Breaker, BreakerPolicy, State
from core.state.store import Store
from shared.errors import FailureClass, GatewayError
from shared.periodic import Periodic

SYNC_INTERVAL_S = 1.0
# Failures that say something about the target's health (not about the request).
UNHEALTHY = frozenset({FailureClass.TRANSIENT, FailureClass.TIMEOUT, FailureClass.RATE_LIMIT})
# Failures the request itself causes: they say nothing about the target, either way.
REQUESTS_OWN = frozenset(
    {FailureClass.CLIENT_ERROR, FailureClass.CONTENT_FILTER, FailureClass.CONTEXT_LENGTH}
)
# Upstream statuses that speak for the target whatever the request was.
TARGET_STATUSES = frozenset({429, 503, 529})
# Breakers for labels that are not configured targets (a safety net: with health labels,
# only `<provider>/*` entries land here, one per provider).
MAX_UNREGISTERED = 256

log = logging.getLogger("interlock.core")


def attribution(error: ProviderError) -> str | None:
    """The tenant an upstream failure is attributable to, or None when it is the target's."""
    if error.failure_class is not FailureClass.TRANSIENT or error.upstream_status is None:
        return None  # timeouts, rate limits, refused/reset connections: the target's own
    if error.upstream_status in TARGET_STATUSES:
        return None
    context = requestctx.current()
    return context.tenant if context is not None else None


class BreakerBoard:
    def __init__(
        self, policy: BreakerPolicy, store: Store, max_unregistered: int = MAX_UNREGISTERED
    ) -> None:
        self._policy = policy
        self._store = store
        self._breakers: dict[str, Breaker] = {}
        self._registered: set[str] = set()
        self._unregistered: OrderedDict[str, None] = OrderedDict()
        self._max_unregistered = max_unregistered
        self._published: dict[str, float] = {}
        self._periodic = Periodic("breaker_sync", SYNC_INTERVAL_S, self.sync)

    def _get(self, label: str) -> Breaker:
        breaker = self._breakers.get(label)
        if breaker is None:
            breaker = self._breakers[label] = Breaker(self._policy)
            if label not in self._registered:
                self._unregistered[label] = None
                if len(self._unregistered) > self._max_unregistered:
                    evicted, _ = self._unregistered.popitem(last=False)
                    del self._breakers[evicted]
                    self._published.pop(evicted, None)
        elif label in self._unregistered:
            self._unregistered.move_to_end(label)
        return breaker

    def allow(self, label: str) -> bool:
        return self._get(label).allow(time.monotonic())

    def permit(self, label: str) -> int | None:
        """None when the circuit refuses; else 0, or the half-open probe slot taken
        (to be ended by `record` or given back by `release`)."""
        breaker = self._get(label)
        before = breaker.state
        slot = breaker.permit(time.monotonic())
        _changed(label, before, breaker, "open period over: one probe")
        return slot

    def release(self, label: str, probe: int) -> None:
        """Give back a probe slot without an outcome (core.resilience.lease: neutral attempts)."""
        if probe:
            self._get(label).release(probe)

    def pass_probe(self, label: str, probe: int) -> None:
        """A probe stream's first chunk: the circuit closes, on probation (see circuit.py)."""
        if probe:
            breaker = self._get(label)
            before = breaker.state
            breaker.pass_probe(probe)
            _changed(label, before, breaker, "the probe answered")

    def record(self, label: str, error: ProviderError | None, probe: int | None = None) -> None:
        """One attempt's outcome: None for a success, else the error it ended with. `probe`:
        the slot `permit` gave the attempt (None: untracked, see Breaker.record)."""
        breaker = self._get(label)
        before = breaker.state
        if error is None or error.failure_class not in UNHEALTHY:
            breaker.record(True, time.monotonic(), probe=probe)
            _changed(label, before, breaker, "the probe succeeded")
        else:
            breaker.record(False, time.monotonic(), attribution(error), probe)
            _changed(label, before, breaker, f"{error.failure_class} failures")

    def retry_after(self, label: str) -> float:
        return max(0.0, self._get(label).open_until - time.monotonic())

    def register(self, labels: list[str]) -> None:
        """Every configured target up front, so a replica learns of a circuit opened by
        another replica even before sending that target anything itself."""
        for label in labels:
            self._registered.add(label)
            self._unregistered.pop(label, None)
            self._get(label)

    def labels(self) -> list[str]:
        return sorted(self._breakers)

    def __len__(self) -> int:
        return len(self._breakers)

    def state(self, label: str) -> State:
        return self._get(label).state

    async def sync(self) -> None:
        wall, mono = time.time(), time.monotonic()
        try:
            await self._publish(wall, mono)
            # Half-open ones too: another replica's failed probe re-opens the circuit here,
            # which also frees this replica's probe slot.
            local = [(k, b) for k, b in self._breakers.items() if b.state is not State.OPEN]
            shared = await self._store.get_many([_key(label) for label, _ in local])
            for (label, breaker), value in zip(local, shared, strict=True):
                if value is not None and float(value) > wall:
                    before = breaker.state
                    breaker.trip(mono, mono + (float(value) - wall))
                    _changed(label, before, breaker, "opened by another replica")
                    self._published[label] = breaker.open_until
        except (GatewayError, ValueError):
            return  # store unavailable (fail-closed) or garbage: stay local this round

    async def _publish(self, wall: float, mono: float) -> None:
        """This replica's new open decisions (rare: only when a breaker has just opened)."""
        for label, breaker in list(self._breakers.items()):
            if breaker.state is State.OPEN and self._published.get(label) != breaker.open_until:
                until_wall = wall + (breaker.open_until - mono)
                await self._store.set(
                    _key(label), repr(until_wall).encode(), max(0.001, breaker.open_until - mono)
                )
                self._published[label] = breaker.open_until

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()


def _key(label: str) -> str:
    return f"il:{{b:{label}}}:open"


def _changed(label: str, before: State, breaker: Breaker, why: str) -> None:
    """A breaker's state change, logged once where it happens: opening is a warning (a
    target stopped being used), probing and closing are news."""
    after = breaker.state
    if after is not before:
        level = logging.WARNING if after is State.OPEN else logging.INFO
        log.log(level, "circuit of %s: %s -> %s (%s)", label, before, after, why)
