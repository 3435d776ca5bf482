"""A leased attempt: what one try at a target holds, and the guarantee that it is given back.

A try needs two things: the target's circuit breaker must let it through (in half-open, the try
may hold the single probe slot) and the provider's key pool must lend it a key (with a token
reservation against the key's TPM). `AttemptLeases.attempt` takes both on entry and settles both
on exit, whatever ended the try; the Dispatcher runs every API's attempts through it.

On exit                    breaker                               key lease
  success                  success recorded                      handed to the Outcome (settled
                                                                 by accounting with real usage)
  target failure (rate     failure recorded, once per request    refunded; the key rests
  limit, 5xx, timeout)     and target (core.resilience.circuit_board attributes)
  target answered (auth,   success recorded (the target is up)   refunded; the key rests
  quota)
  neutral: the request's   nothing recorded; a held probe slot   refunded
  own error (client_error, is given back
  content filter, context
  length), a GatewayError
  (an image that cannot be
  fetched), cancellation
  (the client left), any
  unexpected exception

On entry, an open circuit or no key capacity raises `Unavailable` holding nothing (a probe slot
taken before the key wait is given back): the Dispatcher moves on to the next target.

A request admitted to a target keeps that admission for its retries on it (like its failures,
which count once), so only its first try there asks the breaker.
"""

from __future__ import annotations

import time
from dataclasses import replace
from types import TracebackType

from core.providers.adapters.base import ProviderError, Target
from core.resilience.circuit_board import REQUESTS_OWN, UNHEALTHY, BreakerBoard
from core.resilience.key_pools import KeyLease, KeyPools
from core.resilience.latency import LatencyTracker
from shared.errors import FailureClass


class Unavailable(Exception):
    """A target this try could not use (circuit open, no key capacity); nothing is held."""

    def __init__(self, error: ProviderError) -> None:
        super().__init__(error.message)
        self.error = error


def circuit_open(label: str, retry_after_s: float) -> ProviderError:
    return ProviderError(
        503,
        f"{label} is temporarily unavailable (circuit open); retry shortly",
        FailureClass.TRANSIENT,
        code="circuit_open",
        retry_after_s=max(1.0, retry_after_s),
    )


class AttemptLeases:
    """One request's leases: counts its tries and the targets it was admitted to, and
    remembers which targets its failures were already charged to."""

    __slots__ = ("_admitted", "_charged", "board", "keys", "latency", "tokens", "tries")

    def __init__(
        self, board: BreakerBoard, keys: KeyPools, latency: LatencyTracker, tokens: int
    ) -> None:
        self.board = board
        self.keys = keys
        self.latency = latency
        self.tokens = tokens
        self.tries = 0
        self._admitted: set[str] = set()
        self._charged: set[str] = set()

    @property
    def targets(self) -> int:
        """Targets the breakers let this request try."""
        return len(self._admitted)

    def attempt(self, target: Target, wait_until: float) -> LeasedAttempt:
        """One try at `target`, waiting for key capacity until `wait_until` (monotonic)."""
        return LeasedAttempt(self, target, wait_until)

    def admit(self, label: str) -> int:
        """The breaker's permit for a first try at `label` (0 on retries); raises
        Unavailable when the circuit refuses."""
        if label in self._admitted:
            return 0
        probe = self.board.permit(label)
        if probe is None:
            raise Unavailable(circuit_open(label, self.board.retry_after(label)))
        self._admitted.add(label)
        return probe

    def charge(self, label: str, error: ProviderError) -> bool:
        """A failure the target answered for: recorded once per request and target
        (False when it was not recorded)."""
        if label in self._charged:
            return False
        self.board.record(label, error)
        if error.failure_class in UNHEALTHY:
            self._charged.add(label)
        return True


class LeasedAttempt:
    """The async context manager for one try; `target` carries the leased key."""

    __slots__ = ("_leases", "_probe", "_started", "_wait_until", "label", "lease", "target")

    def __init__(self, leases: AttemptLeases, target: Target, wait_until: float) -> None:
        self._leases = leases
        self._wait_until = wait_until
        self._probe = 0
        self._started = 0.0
        self.label = target.health_label
        self.target = target
        self.lease = KeyLease()

    async def __aenter__(self) -> LeasedAttempt:
        leases = self._leases
        self._probe = leases.admit(self.label)
        provider = self.target.provider.name
        try:
            self.lease = await leases.keys.acquire(provider, leases.tokens, self._wait_until)
        except ProviderError as no_capacity:
            leases.board.release(self.label, self._probe)
            raise Unavailable(no_capacity) from None
        except BaseException:
            leases.board.release(self.label, self._probe)
            raise
        if self.lease.key != self.target.api_key:
            self.target = replace(self.target, api_key=self.lease.key)
        leases.tries += 1
        self._started = time.monotonic()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        leases = self._leases
        if exc is None:
            leases.board.record(self.label, None)
            leases.latency.observe(self.label, time.monotonic() - self._started)
            return  # the key lease now belongs to the Outcome
        self.lease.settle(0)
        if not isinstance(exc, ProviderError) or exc.failure_class in REQUESTS_OWN:
            leases.board.release(self.label, self._probe)  # neutral
            return
        if not leases.charge(self.label, exc):
            leases.board.release(self.label, self._probe)
        pool = leases.keys.pool(self.target.provider.name)
        pool.rest(self.lease.key, exc, time.monotonic())
