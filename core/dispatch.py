"""Calling targets with retries, failover, key pools, breakers and timeouts.

Per request: targets in the route's order (fallback as configured, weighted at random, or
fastest observed first), skipping any whose circuit is open. Each attempt leases a key from
the provider's pool. On failure the failure class decides (the table in shared.errors, the
sets in core.retry, README "Resilience and limits"): another key of the same provider on
429/401/quota; the next target on rate_limit, quota, transient,
timeout, auth or context_length; on the last target, retries with jittered backoff that honours
Retry-After, within the request's deadline; client errors and content filters return at once.
Streams may do all this until their first chunk is in hand, never after.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from core.adapters.base import JSON, ProviderError, Target
from core.breakers import UNHEALTHY, BreakerBoard
from core.keypool import KeyLease, KeyPools
from core.latency import LatencyTracker
from core.planning import Attempt, ImageInliner, plan
from core.retry import FAIL_OVER, RETRY_SAME_TARGET, ROTATE_KEY, RetryPolicy, backoff_s
from core.routing import Route
from core.scrub import sanitize
from shared.config import ResilienceConfig
from shared.errors import FailureClass

__all__ = ["FAILOVER_CLASSES", "Attempt", "Dispatcher", "ImageInliner", "Outcome", "close", "plan"]

log = logging.getLogger("interlock.core")

FAILOVER_CLASSES = FAIL_OVER
T = TypeVar("T")
A = TypeVar("A", bound="Routable")


class Routable(Protocol):
    """What the loop needs of an attempt: chat's planning.Attempt, embeddings' own."""

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


class Dispatcher:
    def __init__(
        self,
        policy: ResilienceConfig,
        breakers: BreakerBoard,
        keys: KeyPools,
        latency: LatencyTracker | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self.retry = RetryPolicy(
            policy.max_retries,
            policy.backoff_base_s,
            policy.backoff_cap_s,
            policy.retry_after_cap_s,
        )
        self.breakers = breakers
        self.keys = keys
        self.latency = latency or LatencyTracker()
        self._rng = rng or random.Random()

    def plan(self, route: Route, payload: JSON) -> list[Attempt]:
        """Capable targets in the order this request should try them."""
        return self.order(route, plan(route, payload))

    def order(self, route: Route, attempts: list[Attempt]) -> list[Attempt]:
        if len(attempts) < 2 or route.strategy == "fallback":
            return attempts
        if route.strategy == "least_latency":
            return sorted(attempts, key=lambda a: self.latency.estimate(a.target.health_label))
        remaining, ordered = list(attempts), []
        while remaining:  # weighted: a random permutation, heavier targets earlier
            pick = self._rng.choices(range(len(remaining)), [a.weight for a in remaining])[0]
            ordered.append(remaining.pop(pick))
        return ordered

    async def complete(
        self,
        attempts: list[Attempt],
        inliner: ImageInliner | None = None,
        tokens: int = 0,
        fallback_follows: bool = False,
    ) -> tuple[JSON, Outcome]:
        payloads = _Payloads(inliner)

        async def call(attempt: Attempt, target: Target) -> JSON:
            payload = await payloads.for_attempt(attempt)
            # Non-streaming answers arrive whole: their first byte is their last.
            async with asyncio.timeout(self.policy.first_byte_timeout_s):
                return await attempt.upstream.complete(payload, target)

        return await self.run(attempts, call, tokens, fallback_follows)

    async def open_stream(
        self,
        attempts: list[Attempt],
        inliner: ImageInliner | None = None,
        tokens: int = 0,
        fallback_follows: bool = False,
    ) -> tuple[JSON | None, AsyncIterator[JSON], Outcome]:
        """The first chunk in hand (or None for an empty stream), the rest, and who serves it."""

        payloads = _Payloads(inliner)

        async def call(attempt: Attempt, target: Target) -> tuple[JSON | None, AsyncIterator[JSON]]:
            payload = await payloads.for_attempt(attempt)
            chunks = attempt.upstream.stream(payload, target)
            try:
                async with asyncio.timeout(self.policy.first_byte_timeout_s):
                    first: JSON | None = await anext(chunks)
            except StopAsyncIteration:
                first = None
            except BaseException:
                await close(chunks)
                raise
            return first, chunks

        (first, chunks), outcome = await self.run(attempts, call, tokens, fallback_follows)
        return first, chunks, outcome

    async def run(
        self,
        attempts: Sequence[A],
        call: Callable[[A, Target], Awaitable[T]],
        tokens: int = 0,
        fallback_follows: bool = False,
    ) -> tuple[T, Outcome]:
        """Try `call(attempt, target)` over the attempts with keys, breakers, retries and
        failover. `target` is the attempt's target with the leased key. `fallback_follows`:
        the caller has more targets after these (e.g. a mixed messages route), so the last
        one here must fail over rather than retry or wait."""
        deadline = time.monotonic() + self.policy.total_deadline_s
        tries = retries = targets_tried = 0
        last_error: ProviderError | None = None
        charged: set[str] = set()  # one request's retries count once against a breaker
        for index, attempt in enumerate(attempts):
            is_last = index == len(attempts) - 1 and not fallback_follows
            label = attempt.target.health_label
            if not self.breakers.allow(label):
                last_error = _circuit_open(label, self.breakers.retry_after(label))
                continue
            targets_tried += 1
            pool = self.keys.pool(attempt.target.provider.name)
            same_target_retries = 0
            while True:
                now = time.monotonic()
                wait_until = min(deadline, now + self.policy.key_wait_max_s) if is_last else now
                try:
                    lease = await self.keys.acquire(
                        attempt.target.provider.name, tokens, wait_until
                    )
                except ProviderError as no_capacity:
                    no_capacity.attempts, no_capacity.target = max(tries, 1), attempt.target
                    last_error = no_capacity
                    break
                target = (
                    replace(attempt.target, api_key=lease.key)
                    if lease.key != attempt.target.api_key
                    else attempt.target
                )
                tries += 1
                started = time.monotonic()
                try:
                    result = await call(attempt, target)
                except TimeoutError:
                    error = _first_byte_timeout()
                except ProviderError as caught:
                    error = sanitize(caught, target)
                else:
                    self.breakers.record(label, None)
                    self.latency.observe(label, time.monotonic() - started)
                    return result, Outcome(
                        target, tries, attempt.dropped, targets_tried - 1, retries, lease
                    )
                lease.settle(0)
                if label not in charged:
                    self.breakers.record(label, error)
                    if error.failure_class in UNHEALTHY:
                        charged.add(label)
                error.attempts, error.target = tries, target
                last_error = error
                failure = error.failure_class
                now = time.monotonic()
                if failure in ROTATE_KEY and pool.has_awake_other(lease.key, now):
                    pool.rest(lease.key, error, now)
                    log.warning(
                        "rotating key of %s after %s", attempt.target.provider.name, failure
                    )
                    continue
                pool.rest(lease.key, error, now)
                if failure in FAIL_OVER and not is_last:
                    log.warning("failover from %s: %s", label, failure)
                    break
                if failure in RETRY_SAME_TARGET and same_target_retries < self.retry.max_retries:
                    wait = backoff_s(
                        self.retry, same_target_retries + 1, error.retry_after_s, deadline - now
                    )
                    if wait is not None:
                        same_target_retries += 1
                        retries += 1
                        await asyncio.sleep(wait)
                        continue
                raise error
        if last_error is None:
            last_error = ProviderError(
                503, "no target could serve the request", FailureClass.TRANSIENT
            )
        raise last_error


def _circuit_open(label: str, retry_after_s: float) -> ProviderError:
    return ProviderError(
        503,
        f"{label} is temporarily unavailable (circuit open); retry shortly",
        FailureClass.TRANSIENT,
        code="circuit_open",
        retry_after_s=max(1.0, retry_after_s),
    )


def _first_byte_timeout() -> ProviderError:
    return ProviderError(
        504,
        "the upstream provider sent nothing before the first-byte timeout",
        FailureClass.TIMEOUT,
    )


async def close(chunks: AsyncIterator[Any]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
