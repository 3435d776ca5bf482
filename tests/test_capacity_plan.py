"""The capacity plan (infra/capacity/PLAN.md, issue 19) stays true: the committed plan is what
the model makes of the committed inputs; the figures those inputs were measured from come out
the same when measured again here (the counts closely; CPU, over a bare hop's measured beside
it, within a band); and a scaled-down fleet on a real Redis Cluster scales as the
model says."""

from __future__ import annotations

import pytest

from tests.bench import capacity
from tests.bench.capacity_model import Inputs
from tests.bench.capacity_sim import simulate

COUNT_TOLERANCE = 0.15  # round trips, Redis commands and ledger records per request
# interlock's CPU over the bare hop's, again over committed: machines differ threefold in CPU
# (0.23 and 0.69 ms per request for the same edge), the ratio far less (0.84-1.05 in three
# measurements on one machine); the band takes another machine's and hour's noise and fails on
# a change that doubles or halves interlock's CPU per request without the inputs following.
CPU_BAND = (0.5, 2.0)


@pytest.fixture(scope="module")
def committed() -> Inputs:
    return capacity.load_inputs()


def test_the_committed_plan_is_what_the_model_makes_of_the_committed_inputs(
    committed: Inputs,
) -> None:
    assert capacity.PLAN.read_text(encoding="utf-8") == capacity.plan_document(committed)


def test_the_inputs_measure_again_within_tolerance(committed: Inputs) -> None:
    again = capacity.measure(rounds=2, burst=1.0)
    for profile in committed.profiles:
        now = again.profile(profile.name)
        for field in ("redis_round_trips", "redis_commands", "ledger_records"):
            was, is_ = getattr(profile, field), getattr(now, field)
            assert abs(is_ - was) <= COUNT_TOLERANCE * was, (profile.name, field, was, is_)
        for field in ("edge_cpu_ms", "core_cpu_ms"):
            ratio = (getattr(now, field) / again.hop_cpu_ms) / (
                getattr(profile, field) / committed.hop_cpu_ms
            )
            assert CPU_BAND[0] <= ratio <= CPU_BAND[1], (profile.name, field, ratio)


def test_a_fleet_on_a_redis_cluster_scales_as_the_model_says(committed: Inputs) -> None:
    """Three cores on a Redis Cluster against one: the same Redis round trips per request
    (within the model's 20%), and requests per core CPU-second of request work within 30%
    (`python -m tests.bench.capacity simulate` reports the 20% verdict: 0.82-1.00 measured on
    the 2-vCPU machine, where three cores, an edge, six Redis nodes and the load generator
    preempt one another; CI gets the margin that noise needs)."""
    verdict = simulate(committed, cores=3, seconds=2.0, rounds=4)
    assert abs(verdict["round_trips_ratio"] - 1) <= 0.2, verdict
    assert verdict["throughput_per_core_ratio"] >= 0.7, verdict
