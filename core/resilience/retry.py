"""When to try again, and how long to wait first.

Failure classes (shared.errors.FailureClass) decide: rate_limit / transient / timeout may be
retried on the same target when no other target is left (a timeout only when the upstream never had
the request, or the operator set `retry_timeouts`: see UpstreamTimeout); auth and quota_exhausted
never retry the same key (they rotate keys or fail over); client_error, content_filter and
context_length are not retried (context_length fails over to a larger-context target instead).
Waits are exponential with full jitter, honour Retry-After up to a cap, and never run past the
request's deadline.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from core.providers.adapters.base import ProviderError
from shared.errors import FailureClass

RETRY_SAME_TARGET = frozenset(
    {FailureClass.RATE_LIMIT, FailureClass.TRANSIENT, FailureClass.TIMEOUT}
)
FAIL_OVER = frozenset(
    {
        FailureClass.RATE_LIMIT,
        FailureClass.QUOTA_EXHAUSTED,
        FailureClass.TRANSIENT,
        FailureClass.TIMEOUT,
        FailureClass.AUTH,
        FailureClass.CONTEXT_LENGTH,
    }
)
ROTATE_KEY = frozenset({FailureClass.RATE_LIMIT, FailureClass.QUOTA_EXHAUSTED, FailureClass.AUTH})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 2  # extra attempts on the last remaining target
    base_s: float = 0.25
    cap_s: float = 8.0
    retry_after_cap_s: float = 20.0


class UpstreamTimeout(ProviderError):
    """The gateway stopped waiting after the upstream had the request (the first-byte or
    completion timeout fired; the connect phase has its own timeout in the transport).
    Retrying it on the same target may run, and bill, the request twice, so that needs
    `core.resilience.retry_timeouts`; failing over to another target is always allowed."""

    def __init__(self, streaming: bool) -> None:
        message = (
            "the upstream provider sent nothing before the first-byte timeout"
            if streaming
            else "the upstream provider did not answer within the completion timeout"
        )
        super().__init__(504, message, FailureClass.TIMEOUT)


def retries_same_target(error: ProviderError, retry_timeouts: bool) -> bool:
    """Whether `error` may be retried on the target that raised it."""
    if error.failure_class not in RETRY_SAME_TARGET:
        return False
    return retry_timeouts or not isinstance(error, UpstreamTimeout)


def backoff_s(
    policy: RetryPolicy,
    retry_number: int,
    retry_after_s: float | None,
    remaining_s: float,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds to wait before retry `retry_number` (1-based), or None if it cannot fit."""
    if retry_after_s is not None:
        wait = min(retry_after_s, policy.retry_after_cap_s)
    else:
        ceiling = min(policy.cap_s, policy.base_s * (2 ** (retry_number - 1)))
        wait = (rng or random).uniform(0, ceiling)
    if wait >= remaining_s:
        return None
    return wait
