"""The request's total deadline (`core.resilience.total_deadline`): what its running out means.

The deadline bounds everything a request does before its answer starts: every try (the one in
flight included: its timeout is the least of its kind's, the provider's and the deadline's time
left), key waits and backoff sleeps. When it runs out the request ends with a 504 that names it;
it is not retried and does not fail over (there is no time left for either). A try cut short by
the deadline says nothing about its target's health (the time was the request's budget, perhaps
spent on earlier tries), so its breaker records nothing (core.resilience.lease).
"""

from __future__ import annotations

from core.providers.adapters.base import ProviderError
from shared.errors import FailureClass


class DeadlineExceeded(ProviderError):
    def __init__(self, total_s: float) -> None:
        super().__init__(
            504,
            f"the request's total deadline ({total_s:g} s, core.resilience.total_deadline) "
            "ran out before an upstream provider answered",
            FailureClass.TIMEOUT,
            code="deadline_exceeded",
        )
