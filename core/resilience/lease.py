"""A leased attempt: what one try at a target holds, and the guarantee that it is given back.

A try needs two things: the target's circuit breaker must let it through (in half-open, the try
may hold the single probe slot) and the provider's key pool must lend it a key (with a token
reservation against the key's TPM). `AttemptLeases.attempt` takes both on entry and settles both
on exit, whatever ended the try; the Dispatcher runs every API's attempts through it.

On exit                    breaker (a Verdict, recorded once)    key lease
  success                  success recorded; for a stream, kept  handed to the Outcome (settled
                           pending on the Outcome until the      by accounting with real usage)
                           stream ends (see below)
  target failure (rate     failure recorded, once per request    refunded; the key rests
  limit, 5xx, timeout)     and target (core.resilience.circuit_board attributes)
  target answered (auth,   success recorded (the target is up)   refunded; the key rests
  quota)
  neutral: the request's   nothing recorded; a held probe slot   refunded
  own error (client_error, is given back
  content filter, context
  length), the request's
  deadline, a GatewayError
  (an image that cannot be
  fetched), cancellation
  (the client left), any
  unexpected exception

A stream's outcome is known when it ends, not at its first chunk: a target that cuts, stalls or
garbles its streams mid-way is failing. So a stream's try leaves its Verdict on the Outcome, and
the pipeline settles it where the stream's end is accounted (core.pipeline.stages.Account): a
clean end is a success, a cut/stall/invalid data the target's failure, a client that left
neutral. Latency is still observed at the first chunk. A half-open probe stream closes the
circuit at its first chunk, on probation (core.resilience.circuit): a long healthy stream does
not hold every other request behind `circuit_open`.

On entry, an open circuit or no key capacity raises `Unavailable` holding nothing (a probe slot
taken before the key wait is given back): the Dispatcher moves on to the next target.

Third, the attempt's budget reservation (core.budgets.enforce), priced for this target and key:
a budget without room refuses the target like an open circuit (Unavailable, holding nothing),
or, for a downgrade budget, raises BudgetDowngrade for the dispatch stage to re-route. The hold
follows the key lease: released when the try fails, handed to the Outcome on success (settled
by accounting at the actual cost).

A request admitted to a target keeps that admission (and its probe slot) for its retries on it
(like its failures, which count once), so only its first try there asks the breaker.
"""

from __future__ import annotations

import time
from dataclasses import replace
from types import TracebackType

from core.budgets.ask import BudgetAsk
from core.budgets.enforce import BudgetHold, Budgets
from core.providers.adapters.base import ProviderError, Target
from core.resilience.circuit_board import REQUESTS_OWN, UNHEALTHY, BreakerBoard
from core.resilience.deadline import DeadlineExceeded
from core.resilience.key_pools import KeyLease, KeyPools
from core.resilience.latency import LatencyTracker
from core.routing.signals import Holder
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

    __slots__ = (
        "_admitted",
        "_charged",
        "ask",
        "board",
        "budgets",
        "holder",
        "keys",
        "latency",
        "timed",
        "tokens",
        "tries",
    )

    def __init__(
        self,
        board: BreakerBoard,
        keys: KeyPools,
        latency: LatencyTracker,
        tokens: int,
        budgets: Budgets | None = None,
        ask: BudgetAsk | None = None,
        holder: Holder | None = None,
    ) -> None:
        self.board = board
        self.holder = holder  # who holds the request's cached prefix: its key is tried first
        self.keys = keys
        self.latency = latency
        self.tokens = tokens
        self.budgets = budgets if budgets is not None and budgets.enabled else None
        self.ask = ask
        self.tries = 0
        self.timed = True  # False: successes are not latency samples (Dispatcher.run)
        self._admitted: dict[str, int] = {}  # label -> the probe slot its first try took
        self._charged: set[str] = set()

    @property
    def targets(self) -> int:
        """Targets the breakers let this request try."""
        return len(self._admitted)

    def attempt(self, target: Target, wait_until: float, streaming: bool = False) -> LeasedAttempt:
        """One try at `target`, waiting for key capacity until `wait_until` (monotonic);
        `streaming`: a success leaves its breaker verdict pending until the stream ends."""
        return LeasedAttempt(self, target, wait_until, streaming)

    def admit(self, label: str) -> int:
        """The breaker's permit for a first try at `label` (retries keep it and its probe
        slot); raises Unavailable when the circuit refuses."""
        if label in self._admitted:
            return self._admitted[label]
        probe = self.board.permit(label)
        if probe is None:
            raise Unavailable(circuit_open(label, self.board.retry_after(label)))
        self._admitted[label] = probe
        return probe

    async def reserve(self, target: Target, lease: KeyLease) -> BudgetHold | None:
        """The try's budget reservation (None when no budget applies)."""
        if self.budgets is None or self.ask is None:
            return None
        return await self.budgets.reserve(self.ask, target, lease.key)

    def charge(self, label: str, error: ProviderError, probe: int) -> bool:
        """A failure the target answered for: recorded once per request and target
        (False when it was not recorded)."""
        if label in self._charged:
            return False
        self.board.record(label, error, probe)
        if error.failure_class in UNHEALTHY:
            self._charged.add(label)
        return True


class Verdict:
    """What one try says about its target's health, recorded on its breaker exactly once:
    when the try ends, or for a stream when the stream ends (core.pipeline settles it)."""

    __slots__ = ("_label", "_leases", "_probe", "settled")

    def __init__(self, leases: AttemptLeases, label: str, probe: int) -> None:
        self._leases = leases
        self._label = label
        self._probe = probe
        self.settled = False

    def succeeded(self) -> None:
        if self._settle():
            self._leases.board.record(self._label, None, self._probe)
            self._leases.latency.outcome(self._label, failed=False)

    def failed(self, error: ProviderError) -> bool:
        """The try (or its stream) ended with `error`: True if that speaks for the target
        (recorded, once per request and target), False if it was neutral."""
        if not self._settle():
            return False
        if error.failure_class in REQUESTS_OWN or isinstance(error, DeadlineExceeded):
            self._leases.board.release(self._label, self._probe)
            return False
        if not self._leases.charge(self._label, error, self._probe):
            self._leases.board.release(self._label, self._probe)
        elif error.failure_class in UNHEALTHY:  # the error rate the strategies read
            self._leases.latency.outcome(self._label, failed=True)
        return True

    def withdrawn(self) -> None:
        """Neutral (cancelled, the client left, an unexpected exception): nothing recorded,
        a held probe slot given back."""
        if self._settle():
            self._leases.board.release(self._label, self._probe)

    def _settle(self) -> bool:
        if self.settled:
            return False
        self.settled = True
        return True


class LeasedAttempt:
    """The async context manager for one try; `target` carries the leased key, `verdict`
    (after a streaming success) the breaker outcome still to settle."""

    __slots__ = (
        "_leases",
        "_probe",
        "_started",
        "_streaming",
        "_wait_until",
        "budget",
        "label",
        "lease",
        "target",
        "verdict",
    )

    def __init__(
        self, leases: AttemptLeases, target: Target, wait_until: float, streaming: bool
    ) -> None:
        self._leases = leases
        self._wait_until = wait_until
        self._streaming = streaming
        self._probe = 0
        self._started = 0.0
        self.label = target.health_label
        self.target = target
        self.lease = KeyLease()
        self.budget: BudgetHold | None = None
        self.verdict: Verdict | None = None

    async def __aenter__(self) -> LeasedAttempt:
        leases = self._leases
        self._probe = leases.admit(self.label)
        provider = self.target.provider.name
        holder = leases.holder
        prefer = holder.key_id if holder is not None and holder.label == self.label else None
        try:
            self.lease = await leases.keys.acquire(
                provider, leases.tokens, self._wait_until, prefer
            )
        except ProviderError as no_capacity:
            leases.board.release(self.label, self._probe)
            raise Unavailable(no_capacity) from None
        except BaseException:
            leases.board.release(self.label, self._probe)
            raise
        try:
            self.budget = await leases.reserve(self.target, self.lease)
        except BaseException as refused:
            self.lease.settle(0)
            leases.board.release(self.label, self._probe)
            if isinstance(refused, ProviderError):
                raise Unavailable(refused) from None
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
        verdict = Verdict(leases, self.label, self._probe)
        if exc is None:
            elapsed = time.monotonic() - self._started
            if leases.timed:
                leases.latency.observe(self.label, elapsed, self._streaming)
            if self._streaming:  # settled when the stream ends; the key lease, too
                leases.board.pass_probe(self.label, self._probe)
                self.verdict = verdict
            else:
                verdict.succeeded()
            return
        self.lease.settle(0)
        if self.budget is not None:
            self.budget.release()
        if not isinstance(exc, ProviderError):
            verdict.withdrawn()
        elif verdict.failed(exc):
            pool = leases.keys.pool(self.target.provider.name)
            pool.rest(self.lease.key, exc, time.monotonic())
