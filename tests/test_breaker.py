"""Circuit breaker state machine: examples and properties (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from core.resilience.circuit import Breaker, BreakerPolicy, State

POLICY = BreakerPolicy(failure_ratio=0.5, min_requests=4, window_s=10, open_s=5)


def test_opens_on_failure_ratio_then_probes_then_closes() -> None:
    breaker = Breaker(POLICY)
    for outcome in (True, False, False):
        breaker.record(outcome, 1.0)
    assert breaker.state is State.CLOSED  # 3 requests: below min_requests
    breaker.record(False, 1.0)
    assert breaker.state is State.OPEN and not breaker.allow(2.0)
    assert breaker.allow(6.1)  # open period over: one probe
    assert breaker.state is State.HALF_OPEN and not breaker.allow(6.2)  # only one at a time
    breaker.record(True, 6.3)
    assert breaker.state is State.CLOSED and breaker.allow(6.4)


def test_failed_probe_reopens() -> None:
    breaker = Breaker(POLICY)
    breaker.trip(0.0)
    assert breaker.allow(5.0)
    breaker.record(False, 5.1)
    assert breaker.state is State.OPEN and not breaker.allow(9.0) and breaker.allow(10.2)


def test_old_failures_age_out_of_the_window() -> None:
    breaker = Breaker(POLICY)
    for _ in range(3):
        breaker.record(False, 0.0)
    breaker.record(True, 30.0)  # long after: the old failures no longer count
    assert breaker.counts(30.0) == (0, 1)
    assert breaker.state is State.CLOSED


def test_stragglers_while_open_are_ignored() -> None:
    breaker = Breaker(POLICY)
    breaker.trip(0.0)
    breaker.record(True, 1.0)
    assert breaker.state is State.OPEN


def test_failures_attributable_to_one_tenant_never_open_it() -> None:
    breaker = Breaker(POLICY)
    for _ in range(50):
        breaker.record(False, 1.0, attributable_to="tenant-a")
    assert breaker.state is State.CLOSED and breaker.counts(1.0) == (0, 50)


def test_attributable_failures_from_two_tenants_open_it() -> None:
    breaker = Breaker(POLICY)
    for tenant in ("a", "a", "a"):
        breaker.record(False, 1.0, attributable_to=tenant)
    assert breaker.state is State.CLOSED
    breaker.record(False, 1.0, attributable_to="b")
    assert breaker.state is State.OPEN


def test_an_attributable_probe_failure_neither_closes_nor_reopens() -> None:
    breaker = Breaker(POLICY)
    breaker.trip(0.0)
    assert breaker.allow(5.0)
    breaker.record(False, 5.1, attributable_to="a")
    assert breaker.state is State.HALF_OPEN and breaker.allow(5.2)  # the slot is free again
    breaker.record(True, 5.3)
    assert breaker.state is State.CLOSED


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 3), st.booleans(), st.booleans()), max_size=80))
def test_properties(steps: list[tuple[float, bool, bool]]) -> None:
    breaker = Breaker(POLICY)
    now = 0.0
    for gap, ask, success in steps:
        now += gap
        if ask:
            was_open = breaker.state is State.OPEN and now < breaker.open_until
            allowed = breaker.allow(now)
            assert not (was_open and allowed)  # never lets traffic through while open
            if allowed:
                breaker.record(success, now)
                failures, total = breaker.counts(now)
                assert 0 <= failures <= total + 1e-9
                if breaker.state is State.CLOSED and total >= POLICY.min_requests:
                    assert failures / total < POLICY.failure_ratio  # would have tripped


def test_a_probe_slot_given_back_frees_only_that_slot() -> None:
    """core.resilience.lease gives a slot back when an attempt ends with nothing to record; a stale
    number (the slot was already ended, or the breaker re-tripped) frees nothing."""
    breaker = Breaker(POLICY)
    breaker.trip(0.0)
    first = breaker.permit(5.0)
    assert first and breaker.permit(5.1) is None  # one probe at a time
    breaker.release(first)
    second = breaker.permit(5.2)
    assert second and second != first
    breaker.release(first)  # stale: the second probe keeps its slot
    assert breaker.permit(5.3) is None
    breaker.trip(5.4)
    breaker.release(second)  # open again: nothing to give back
    assert breaker.state is State.OPEN and breaker.permit(6.0) is None
    assert Breaker(POLICY).permit(0.0) == 0  # closed: let through, no slot to give back


def test_in_half_open_only_the_probes_own_outcome_counts() -> None:
    """A stream begun before the circuit opened may end during half-open: its outcome is a
    straggler's, and neither closes the circuit nor frees the probe's slot."""
    breaker = Breaker(POLICY)
    breaker.trip(0.0)
    probe = breaker.permit(5.0)
    assert probe
    breaker.record(True, 5.1, probe=0)  # a straggler's success
    assert breaker.state is State.HALF_OPEN and breaker.permit(5.2) is None
    breaker.record(False, 5.3, probe=0)  # a straggler's failure
    assert breaker.state is State.HALF_OPEN
    breaker.record(True, 5.4, probe=probe)
    assert breaker.state is State.CLOSED


def test_a_probe_stream_closes_the_circuit_on_probation() -> None:
    """Its first chunk closes the circuit (a long stream does not hold it half-open); its own
    failure at the end re-opens it at once, its clean end leaves it closed."""
    breaker = Breaker(POLICY)
    breaker.trip(0.0)
    probe = breaker.permit(5.0)
    assert probe
    breaker.pass_probe(probe)
    assert breaker.state is State.CLOSED and breaker.permit(5.1) == 0
    breaker.record(False, 6.0, probe=probe)  # the probe's stream was cut
    assert breaker.state is State.OPEN and breaker.permit(10.9) is None
    again = breaker.permit(11.1)
    assert again
    breaker.pass_probe(again)
    breaker.record(True, 12.0, probe=again)
    breaker.record(False, 12.1, probe=again)  # recorded once: a second outcome is a plain one
    assert breaker.state is State.CLOSED


def test_a_trip_ends_probation() -> None:
    breaker = Breaker(POLICY)
    breaker.trip(0.0)
    probe = breaker.permit(5.0)
    assert probe
    breaker.pass_probe(probe)
    breaker.trip(6.0)  # e.g. another replica's decision
    later = breaker.permit(11.1)
    assert later
    breaker.record(True, 11.2, probe=later)
    breaker.record(False, 11.3, probe=probe)  # the old probe's stream ends: a plain failure
    assert breaker.state is State.CLOSED
