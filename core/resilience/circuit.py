"""Per-target circuit breaker: stop sending traffic to a target that keeps failing.

Closed: traffic flows; outcomes are counted over a sliding window (two fixed halves, the older
one weighted by how much of it is still inside the window). When the failure ratio crosses
the threshold with enough requests, the breaker opens for `open_s`; then one probe at a time is
let through (half-open). A probe success closes it; a probe failure opens it again.

Attribution: a failure may be *attributable* to one tenant (an upstream 5xx that the request's
content can cause, e.g. a malformed image). Such failures count only while the window holds
attributable failures from at least two distinct tenants: one tenant alone can never open the
shared circuit, a real outage (everyone failing) still does. Failures that are the target's own
(connection refused/reset, timeouts, 429/503/529) always count. In half-open, an attributable
failure neither closes nor reopens: the probe slot is released for another request.

Probe slots are numbered (`permit` returns the number) so that an attempt that ends with no
outcome to record (cancelled, the request's own error, no key: see core.resilience.lease) can give
its slot back with `release` without freeing a slot another request took since, and so that an
outcome recorded in half-open is the probe's own: a straggler (a stream begun before the circuit
opened, ending now) neither closes nor re-opens it.

A stream's outcome is known only when it ends, which may be minutes after its first chunk. A probe
stream does not hold the circuit half-open that long: its first chunk closes the circuit *on
probation* (`pass_probe`), and if the same stream then fails for the target's own reasons, the
circuit re-opens at once, as a failed probe would have.

The state machine is pure (time is passed in); core.resilience.circuit_board shares open decisions
across replicas through the Store and keeps working locally when the Store is down.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failure_ratio: float = 0.5
    min_requests: int = 10
    window_s: float = 30.0
    open_s: float = 15.0


# Distinct tenants remembered per half-window: two are enough to know "more than one".
_TENANTS_KEPT = 2


class _Half:
    """Outcomes over one half of the window."""

    __slots__ = ("failures", "soft", "tenants", "total")

    def __init__(self) -> None:
        self.failures = 0  # failures that always count
        self.soft = 0  # failures attributable to one tenant's request
        self.total = 0
        self.tenants: set[str] = set()

    def add_soft(self, tenant: str) -> None:
        self.soft += 1
        if len(self.tenants) < _TENANTS_KEPT:
            self.tenants.add(tenant)


class Breaker:
    __slots__ = (
        "_current",
        "_current_start",
        "_open_until",
        "_previous",
        "_probation",
        "_probe",
        "_probe_in_flight",
        "policy",
        "state",
    )

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self.state = State.CLOSED
        self._open_until = 0.0
        self._probe_in_flight = False
        self._probe = 0  # the number of the latest probe slot handed out
        self._probation = 0  # the probe whose stream closed the circuit and has not ended
        self._current = _Half()
        self._previous = _Half()
        self._current_start = 0.0

    def _roll(self, now: float) -> None:
        half = self.policy.window_s / 2
        if now - self._current_start >= half:
            gap = now - self._current_start
            self._previous = self._current if gap < 2 * half else _Half()
            self._current = _Half()
            self._current_start = (
                now - ((now - self._current_start) % half) if gap < 2 * half else now
            )

    def counts(self, now: float) -> tuple[float, float]:
        """(failures, total) over the sliding window; attributable failures are included
        only when they come from at least two tenants."""
        self._roll(now)
        half = self.policy.window_s / 2
        weight = max(0.0, 1.0 - (now - self._current_start) / half)
        current, previous = self._current, self._previous
        failures = current.failures + previous.failures * weight
        tenants = current.tenants | (previous.tenants if weight > 0 else set())
        if len(tenants) >= 2:
            failures += current.soft + previous.soft * weight
        return failures, current.total + previous.total * weight

    def permit(self, now: float) -> int | None:
        """None: refused. 0: let through (closed). n > 0: let through as half-open probe n,
        which the caller must end with `record` or give back with `release(n)`."""
        if self.state is State.CLOSED:
            return 0
        if self.state is State.OPEN:
            if now < self._open_until:
                return None
            self.state = State.HALF_OPEN
            self._probe_in_flight = False
        if self._probe_in_flight:
            return None
        self._probe_in_flight = True
        self._probe += 1
        return self._probe

    def allow(self, now: float) -> bool:
        return self.permit(now) is not None

    def release(self, probe: int) -> None:
        """Give back probe slot `probe` without an outcome; a no-op unless it is still the
        slot in flight (an outcome recorded or a trip since has already freed it)."""
        if probe and probe == self._probe and self.state is State.HALF_OPEN:
            self._probe_in_flight = False

    def pass_probe(self, probe: int) -> None:
        """Probe `probe` is answering (a stream's first chunk is in hand): close the circuit
        now, on probation until that stream's own outcome is recorded."""
        if probe and probe == self._probe and self.state is State.HALF_OPEN:
            self._close()
            self._probation = probe

    def record(
        self,
        success: bool,
        now: float,
        attributable_to: str | None = None,
        probe: int | None = None,
    ) -> None:
        """One outcome. `attributable_to`: the tenant whose request may have caused this
        failure (None: the failure is the target's own). `probe`: the slot `permit` gave the
        attempt (0: let through closed); None for a caller that does not track slots, whose
        outcome in half-open is taken as the probe's."""
        if self.state is State.HALF_OPEN:
            if probe is not None and probe != self._probe:
                return  # a straggler, not the probe: says nothing about the probe
            self._probe_in_flight = False
            if success:
                self._close()
            elif attributable_to is None:
                self.trip(now)
            return
        if probe and probe == self._probation:
            self._probation = 0
            if not success and attributable_to is None:
                self.trip(now)  # the probe's stream failed after all
                return
        if self.state is State.OPEN:
            return  # a straggler from before the breaker opened
        self._roll(now)
        self._current.total += 1
        if not success:
            if attributable_to is None:
                self._current.failures += 1
            else:
                self._current.add_soft(attributable_to)
        # Evaluated after every call: the call that reaches min_requests may be a success.
        failures, total = self.counts(now)
        if total >= self.policy.min_requests and failures / total >= self.policy.failure_ratio:
            self.trip(now)

    def trip(self, now: float, until: float | None = None) -> None:
        self.state = State.OPEN
        self._open_until = until if until is not None else now + self.policy.open_s
        self._probe_in_flight = False
        self._probation = 0

    @property
    def open_until(self) -> float:
        return self._open_until

    def _close(self) -> None:
        self.state = State.CLOSED
        self._current = _Half()
        self._previous = _Half()
