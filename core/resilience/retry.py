"""When to try again, and how long to wait first.

Failure classes (shared.errors.FailureClass) decide: rate_limit / transient / timeout may be
retried on the same target when no other target is left (a timeout only when the upstream never had
the request, or the operator set `retry_timeouts`: see UpstreamTimeout; never an answer that was
too large: ResponseTooLarge); auth and quota_exhausted
never retry the same key (they rotate keys or fail over); client_error, content_filter and
context_length are not retried (context_length fails over to a larger-context target instead).
Waits are exponential with full jitter, honour Retry-After up to a cap, and never run past the
request's deadline.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

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


# Every timeout the gateway can hit, by what it bounds. The message and the machine-readable
# `code` (`timeout_<kind>`) name it, so an operator or a client can tell a stall from a drip.
TimeoutKind = Literal["connect", "first_byte", "completion", "idle", "throughput", "total"]
_TIMEOUT_MESSAGES: dict[TimeoutKind, str] = {
    "connect": "could not connect to the upstream provider in time (connect timeout)",
    "first_byte": "the upstream provider sent nothing before the first-byte timeout",
    "completion": "the upstream provider did not answer within the completion timeout",
    "idle": "the upstream stream stalled (idle timeout)",
    "throughput": "the upstream stream sent too little for too long (throughput timeout)",
    "total": "the upstream provider did not finish within its total timeout (total timeout)",
}


class UpstreamTimeout(ProviderError):
    """The gateway stopped waiting for an upstream, naming which clock fired (`kind`, also
    in `code` as `timeout_<kind>`). `streaming` without a kind is the dispatcher's own clock:
    the first-byte timeout for a stream, the completion timeout otherwise.

    Only a connect timeout left the upstream without the request; after any other, retrying on
    the same target may run, and bill, the request twice, so that needs
    `core.resilience.retry_timeouts`. Failing over to another target is always allowed."""

    def __init__(self, streaming: bool = False, *, kind: TimeoutKind | None = None) -> None:
        self.kind: TimeoutKind = kind or ("first_byte" if streaming else "completion")
        super().__init__(
            504, _TIMEOUT_MESSAGES[self.kind], FailureClass.TIMEOUT, code=f"timeout_{self.kind}"
        )

    @property
    def reached_upstream(self) -> bool:
        return self.kind != "connect"


class ResponseTooLarge(ProviderError):
    """A whole answer over `core.max_response_bytes`. The same target would most likely send
    the same answer again (and bill it again), so it is never retried there; it fails over."""

    def __init__(self) -> None:
        super().__init__(
            502, "upstream response too large", FailureClass.TRANSIENT, code="response_too_large"
        )


def retries_same_target(error: ProviderError, retry_timeouts: bool) -> bool:
    """Whether `error` may be retried on the target that raised it."""
    if error.failure_class not in RETRY_SAME_TARGET or isinstance(error, ResponseTooLarge):
        return False
    if isinstance(error, UpstreamTimeout) and error.reached_upstream:
        return retry_timeouts
    return True


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
