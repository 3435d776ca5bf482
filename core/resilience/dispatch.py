"""Calling targets with retries, failover, key pools, breakers and timeouts, for every API.

Per request: the route's candidates in the order its strategy gives (core.routing.ordering),
planned by the API's planner (which targets can serve it, with which payload), then tried in that
order. Each try is a leased attempt (core.resilience.lease): breaker permission and a key from the
provider's pool, always given back. On failure the failure class decides (core.resilience.retry):
another key of the same provider on 429/401/quota; the next target on rate_limit, quota, transient,
timeout, auth or context_length; on the last target, retries with jittered backoff that honours
Retry-After, within the request's deadline; client errors and content filters return at once.

Timeouts by kind: a stream must deliver its first chunk within `first_byte_timeout`; a
non-streaming call its whole answer within `completion_timeout` (both bounded by the provider's
total timeout, so this clock fires first). When this clock fires the upstream had the request
(the connect phase has its own, shorter timeout in the transport), so the call is not retried
on the same target unless `retry_timeouts` is set: it may still be running, and billed, there.
Failing over to another target after a timeout is allowed (another provider or deployment).
Streams may do all this until their first chunk is in hand, never after.

The request's total deadline bounds all of it, the attempt in flight included
(core.resilience.deadline): when it runs out the request ends with a 504 naming it, not
retried. A client that leaves cancels the task running this loop: the attempt in flight (its
connection closed), any backoff sleep or key wait; nothing more is tried. Traced, each try has
a CLIENT span saying why (first, retry, rotate_key, failover); an untried target is an event.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from core.budgets.ask import BudgetAsk
from core.budgets.enforce import BudgetHold, Budgets
from core.observe.events import FAILOVERS, RETRIES
from core.observe.tracing import ACTIVE, RequestTrace, traced
from core.providers.adapters.base import JSON, ProviderError, Target
from core.providers.scrub import sanitize
from core.resilience.circuit_board import BreakerBoard
from core.resilience.deadline import DeadlineExceeded
from core.resilience.key_pools import KeyLease, KeyPools
from core.resilience.latency import LatencyTracker
from core.resilience.lease import AttemptLeases, LeasedAttempt, Unavailable, Verdict
from core.resilience.retry import (
    FAIL_OVER,
    ROTATE_KEY,
    RetryPolicy,
    UpstreamTimeout,
    backoff_s,
    retries_same_target,
)
from core.routing.ordering import order
from core.routing.planning import Attempt, ImageInliner
from core.routing.registry import Route
from core.routing.signals import NO_DEMAND, Demand, Holder, Signals
from core.spend.cost import Pricing
from shared.config import ResilienceConfig
from shared.errors import FailureClass

__all__ = [
    "Attempt",
    "Dispatcher",
    "ImageInliner",
    "Outcome",
    "close",
    "completion_call",
    "stream_call",
]

log = logging.getLogger("interlock.core")

# Used when neither the provider nor the Dispatcher's owner names a total timeout.
DEFAULT_UPSTREAM_TIMEOUT_S = 600.0
T = TypeVar("T")
A = TypeVar("A", bound="Routable")
R = TypeVar("R")
P = TypeVar("P")


class Routable(Protocol):
    """What the loop needs of an attempt: chat's planning.Attempt, any API's own step."""

    @property
    def target(self) -> Target: ...

    @property
    def dropped(self) -> tuple[str, ...]: ...


@dataclass(slots=True)
class Outcome:
    target: Target
    attempts: int
    dropped: tuple[str, ...]
    failovers: int = 0
    retries: int = 0
    lease: KeyLease | None = None
    # A stream's breaker verdict, pending until the stream ends (core.resilience.lease).
    verdict: Verdict | None = None
    # The serving try's budget hold, settled by accounting at the actual cost.
    budget: BudgetHold | None = None
    downgraded_from: str | None = None  # the model a downgrade budget re-routed away from
    upstream_s: float = 0.0  # from the first try until served (Server-Timing's `upstream`)

    def budget_headers(self) -> dict[str, str]:
        """x-interlock-budget* for the budget with least room, and the downgrade, if any."""
        headers = dict(self.budget.headers) if self.budget is not None else {}
        if self.downgraded_from is not None:
            headers["x-interlock-downgraded-from"] = self.downgraded_from
        return headers

    def settle(self, error: ProviderError | None, clean: bool) -> None:
        """The stream has ended: with `error` (the target's failure, or neutral if it is the
        request's own), cleanly, or neither (the client left). A no-op after the first call
        and for answers whose verdict was recorded when they arrived."""
        verdict = self.verdict
        if verdict is None:
            return
        if error is not None:
            verdict.failed(error)
        elif clean:
            verdict.succeeded()
        else:
            verdict.withdrawn()


class _Payloads:
    """Each attempt's payload, fetching remote images at most once per request."""

    __slots__ = ("_inlined", "_inliner")

    def __init__(self, inliner: ImageInliner | None) -> None:
        self._inliner = inliner
        self._inlined: dict[int, Any] = {}

    async def for_attempt(self, attempt: Attempt) -> JSON:
        if not attempt.inline_images or self._inliner is None:
            return attempt.payload
        # Lenient targets get trimmed copies of the payload that share its `messages` list:
        # keyed on that list, every variant reuses the one fetch (and the one byte budget).
        messages = attempt.payload.get("messages")
        key = id(messages)
        if key not in self._inlined:
            self._inlined[key] = (await self._inliner(attempt.payload)).get("messages")
        inlined = self._inlined[key]
        return attempt.payload if inlined is messages else {**attempt.payload, "messages": inlined}


Completion = Callable[[Attempt, Target], Awaitable[JSON]]
Opened = tuple[JSON | None, AsyncIterator[JSON]]
StreamOpener = Callable[[Attempt, Target], Awaitable[Opened]]


def completion_call(inliner: ImageInliner | None) -> Completion:
    """The call for canonical non-streaming attempts (chat, translated messages)."""
    payloads = _Payloads(inliner)

    async def call(attempt: Attempt, target: Target) -> JSON:
        return await attempt.upstream.complete(await payloads.for_attempt(attempt), target)

    return call


def stream_call(inliner: ImageInliner | None) -> StreamOpener:
    """The call for canonical streams: the first chunk in hand (None for an empty stream)
    and the rest, so failures before the first chunk can still fail over."""
    payloads = _Payloads(inliner)

    async def call(attempt: Attempt, target: Target) -> Opened:
        chunks = attempt.upstream.stream(await payloads.for_attempt(attempt), target)
        try:
            first: JSON | None = await anext(chunks)
        except StopAsyncIteration:
            first = None
        except BaseException:
            await close(chunks)
            raise
        return first, chunks

    return call


@dataclass(slots=True)
class _Run:
    """One request's progress through its attempts."""

    leases: AttemptLeases
    deadline: float
    started: float
    trace: RequestTrace | None = None  # the request's, when it is traced
    retries: int = 0
    last_error: ProviderError | None = None
    reason: str = "first"  # why the next try is made (its span says so)


def _served(run: _Run, attempt: Routable, leased: LeasedAttempt) -> Outcome:
    """What served the request, once a try on `attempt`'s target succeeded."""
    return Outcome(
        leased.target,
        run.leases.tries,
        attempt.dropped,
        run.leases.targets - 1,  # the failovers
        run.retries,
        leased.lease,
        leased.verdict,
        leased.budget,
        upstream_s=time.monotonic() - run.started,
    )


class Dispatcher:
    def __init__(
        self,
        policy: ResilienceConfig,
        breakers: BreakerBoard,
        keys: KeyPools,
        latency: LatencyTracker | None = None,
        rng: random.Random | None = None,
        upstream_timeout_s: float = DEFAULT_UPSTREAM_TIMEOUT_S,
        budgets: Budgets | None = None,
        pricing: Pricing | None = None,
    ) -> None:
        self.policy = policy
        self.budgets = budgets
        self.retry = RetryPolicy(
            policy.max_retries,
            policy.backoff_base_s,
            policy.backoff_cap_s,
            policy.retry_after_cap_s,
        )
        self.breakers = breakers
        self.keys = keys
        self.latency = latency or LatencyTracker(explore_after_s=policy.latency_explore_after_s)
        self.signals = Signals(self.latency, breakers, pricing)
        self._rng = rng or random.Random()
        self._upstream_timeout_s = upstream_timeout_s

    def order(self, route: Route, demand: Demand = NO_DEMAND) -> Route:
        """The route with its candidates in the order its strategy gives this request."""
        return order(route, self.signals, self._rng, demand)

    def plan(
        self,
        route: Route,
        request: R,
        planner: Callable[[Route, R], P],
        demand: Demand = NO_DEMAND,
    ) -> P:
        """Ordering, then the API's planner: every API's attempts follow the strategy."""
        return planner(self.order(route, demand), request)

    async def run(
        self,
        attempts: Sequence[A],
        call: Callable[[A, Target], Awaitable[T]],
        tokens: int = 0,
        *,
        streaming: bool = False,
        budget: BudgetAsk | None = None,
        holder: Holder | None = None,
        timed: bool = True,
    ) -> tuple[T, Outcome]:
        """Try `call(attempt, target)` over the attempts with leased keys and breakers, retries
        and failover (`target`: the attempt's, with the leased key). `streaming` picks the
        timeout (first byte, else completion); `budget`: what each try's reservation prices
        (core.budgets); `holder`: the target and key holding the request's cached prefix
        (core.cache.affinity), whose key that target's pool lends first; `timed` False: a
        try's duration is not the target's latency (a token count), not sampled."""
        leases = AttemptLeases(
            self.breakers, self.keys, self.latency, tokens, self.budgets, budget, holder
        )
        leases.timed = timed
        now = time.monotonic()
        run = _Run(leases, now + self.policy.total_deadline_s, now, ACTIVE.get())
        try:
            for index, attempt in enumerate(attempts):
                is_last = index == len(attempts) - 1
                served = await self._on_target(run, attempt, call, is_last, streaming)
                if served is not None:
                    return served
            raise run.last_error or ProviderError(
                503, "no target could serve the request", FailureClass.TRANSIENT
            )
        finally:  # raised, not kept: its traceback holds this frame (a cycle otherwise)
            run.last_error = None

    async def _on_target(
        self,
        run: _Run,
        attempt: A,
        call: Callable[[A, Target], Awaitable[T]],
        is_last: bool,
        streaming: bool,
    ) -> tuple[T, Outcome] | None:
        """Tries on one target until served, or None to move on to the next target."""
        same_target_retries = 0
        reread = False  # a refused referenced key is read again once per target
        while True:
            now = time.monotonic()
            if now >= run.deadline:
                raise self._deadline_exceeded(run, attempt.target)
            wait_until = min(run.deadline, now + self.policy.key_wait_max_s) if is_last else now
            leased = run.leases.attempt(attempt.target, wait_until, streaming)
            try:
                async with leased:
                    sent = self._timed(call, attempt, leased.target, streaming, run)
                    result = await traced(run.trace, sent, leased.target, run.reason, streaming)
            except Unavailable as refused:
                self._skipped(run, attempt.target, refused.error)
                return None
            except ProviderError as error:
                error.attempts, error.target = run.leases.tries, leased.target
                run.last_error = error
                if isinstance(error, DeadlineExceeded):
                    raise
                failure = error.failure_class
                pool = self.keys.pool(attempt.target.provider.name)
                if failure is FailureClass.AUTH and not reread and await pool.reread(leased.lease):
                    reread = True  # a rotated key: one more try with its new value
                    continue
                if failure in ROTATE_KEY and pool.has_awake_other(leased.lease.key, now):
                    log.warning("rotating key of %s after %s", leased.target.provider.name, failure)
                    run.reason = "rotate_key"
                    continue
                if failure in FAIL_OVER and not is_last:
                    FAILOVERS.add((leased.label,))
                    log.warning("failover from %s: %s", leased.label, failure)
                    run.reason = "failover"
                    return None
                if await self._backoff(run, error, same_target_retries):
                    RETRIES.add((leased.label,))
                    same_target_retries += 1
                    run.reason = "retry"
                    continue
                raise
            return result, _served(run, attempt, leased)

    def _skipped(self, run: _Run, target: Target, error: ProviderError) -> None:
        """A target this try could not use (circuit open, no key): the next one is tried."""
        error.attempts, error.target, run.last_error = max(run.leases.tries, 1), target, error
        if run.trace is not None:
            run.trace.skipped(target, error)
        run.reason = "failover"

    def _deadline_exceeded(self, run: _Run, target: Target) -> DeadlineExceeded:
        error = DeadlineExceeded(self.policy.total_deadline_s)
        error.attempts, error.target = run.leases.tries, target
        return error

    async def _backoff(self, run: _Run, error: ProviderError, retries_so_far: int) -> bool:
        """Waits before another try on the same target; False when none is allowed."""
        if retries_so_far >= self.retry.max_retries:
            return False
        if not retries_same_target(error, self.policy.retry_timeouts):
            return False
        remaining = run.deadline - time.monotonic()
        wait = backoff_s(self.retry, retries_so_far + 1, error.retry_after_s, remaining)
        if wait is None:
            return False
        run.retries += 1
        await asyncio.sleep(wait)
        return True

    async def _timed(
        self,
        call: Callable[[A, Target], Awaitable[T]],
        attempt: A,
        target: Target,
        streaming: bool,
        run: _Run,
    ) -> T:
        """One call under the timeout for its kind, the provider's and the request's deadline,
        whichever ends first; every failure leaves as a ProviderError scrubbed for the tenant."""
        limit = self.policy.first_byte_timeout_s if streaming else self.policy.completion_timeout_s
        limit = min(limit, target.provider.timeout_s or self._upstream_timeout_s)
        left = run.deadline - time.monotonic()
        timer = asyncio.timeout(min(limit, left))
        try:
            async with timer:
                return await call(attempt, target)
        except TimeoutError:
            if not timer.expired():
                raise ProviderError(
                    504, "upstream provider timed out", FailureClass.TIMEOUT
                ) from None
            if left < limit:
                raise DeadlineExceeded(self.policy.total_deadline_s) from None
            raise UpstreamTimeout(streaming) from None
        except ProviderError as caught:
            raise sanitize(caught, target) from None


async def close(chunks: AsyncIterator[Any]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
