"""The capacity model's arithmetic (tests/bench/capacity_model.py), checked by hand."""

from __future__ import annotations

import pytest

from tests.bench.capacity_model import Inputs, Profile, lambda_duration_s, plan, render, row

PROFILE = Profile("full", 0.3, 0.6, 30.0, 3.0, 20.0, 1.0)
INPUTS = Inputs("test box", "2026-12-02", (PROFILE,), 0.2, 20_000.0, 512, 2.0)


def test_processes_shards_and_database_scale_with_the_rate() -> None:
    low, mid, high = (row(INPUTS, PROFILE, rate) for rate in (1_000, 10_000, 100_000))
    # 1,000 req/s x 0.6 ms = 0.6 s of CPU per second, at 60% utilisation: one process.
    assert (low.core_processes, mid.core_processes, high.core_processes) == (1, 10, 100)
    # The edge: 0.3 ms x 1,000 = 0.3 s/s -> 0.5 of a process -> 1; 5 at 10k; 50 at 100k.
    assert (low.edge_processes, mid.edge_processes, high.edge_processes) == (1, 5, 50)
    # Redis: 30 us x 100,000 = 3 s/s over 0.6 -> 5 primaries.
    assert (low.redis_shards, high.redis_shards) == (1, 5)
    assert high.redis_round_trips_s == 300_000
    # PostgreSQL: 100,000 records/s over 20,000 per vCPU-second at 60% -> 9 vCPUs.
    assert high.pg_vcpus == 9


def test_the_lambda_edge_is_billed_for_the_whole_wait() -> None:
    # 0.3 ms of CPU at 512/1769 of a vCPU, the core's 0.6 ms, the model's 2 s.
    assert lambda_duration_s(INPUTS, PROFILE) == pytest.approx(0.0003 * 1769 / 512 + 0.0006 + 2)
    low = row(INPUTS, PROFILE, 1_000)
    assert low.lambda_concurrency == 2_002
    per_request = (0.0003 * 1769 / 512 + 0.0006 + 2) * 0.5 * 0.0000133334 + 0.2e-6
    assert low.lambda_usd_month == round(1_000 * 30 * 24 * 3600 * per_request)


def test_the_rendered_plan_has_a_row_per_profile_and_rate() -> None:
    table = render(INPUTS)
    assert len(plan(INPUTS)) == 3
    assert table.count("\n| full |") == 3
    assert "2,002 (quota raise)" in table
