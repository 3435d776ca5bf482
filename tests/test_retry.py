"""Backoff: full jitter within the exponential ceiling, Retry-After honoured and capped."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from core.resilience.retry import FAIL_OVER, RETRY_SAME_TARGET, ROTATE_KEY, RetryPolicy, backoff_s
from shared.errors import FailureClass

POLICY = RetryPolicy(max_retries=3, base_s=0.5, cap_s=4, retry_after_cap_s=10)


@given(st.integers(1, 20), st.integers(0, 2**32))
def test_jitter_stays_under_the_exponential_ceiling(retry: int, seed: int) -> None:
    wait = backoff_s(POLICY, retry, None, 1000, random.Random(seed))
    assert wait is not None and 0 <= wait <= min(4, 0.5 * 2 ** (retry - 1))


def test_retry_after_is_honoured_and_capped() -> None:
    assert backoff_s(POLICY, 1, 3.0, 100) == 3.0
    assert backoff_s(POLICY, 1, 120.0, 100) == 10.0


def test_nothing_waits_past_the_deadline() -> None:
    assert backoff_s(POLICY, 1, 5.0, 4.9) is None
    assert backoff_s(POLICY, 10, None, 0.0) is None


def test_failure_classes() -> None:
    assert FailureClass.CLIENT_ERROR not in FAIL_OVER | RETRY_SAME_TARGET
    assert FailureClass.CONTENT_FILTER not in FAIL_OVER | RETRY_SAME_TARGET
    assert FailureClass.QUOTA_EXHAUSTED not in RETRY_SAME_TARGET  # never the same key again
    assert FailureClass.QUOTA_EXHAUSTED in ROTATE_KEY and FailureClass.AUTH in ROTATE_KEY
    assert (
        FailureClass.CONTEXT_LENGTH in FAIL_OVER
        and FailureClass.CONTEXT_LENGTH not in RETRY_SAME_TARGET
    )
