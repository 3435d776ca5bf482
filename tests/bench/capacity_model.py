"""The capacity model (issue 19): from figures measured on one machine (`Inputs`, written by
`python -m tests.bench.capacity measure`), what a deployment needs at a given request rate.

Pure arithmetic, no I/O: the plan in infra/capacity/PLAN.md is rendered from the committed
inputs by `python -m tests.bench.capacity plan`, and tests/test_capacity_plan.py checks that
the committed plan is what these functions make of the committed inputs.

The model, per request rate R (requests per second):

- **Core and container edge**: CPU seconds per request x R, over a target utilisation (a
  Python process is one event loop: one core each; 60% leaves room for bursts and GC). The
  tiers scale out horizontally, so vCPUs round up to whole processes.
- **Redis**: Redis runs commands on one thread, so a shard is one core: its CPU per request
  (measured at the redis-server process) x R over the same utilisation gives the primaries; a
  cluster keeps one replica per primary. Round trips per request x R is the network load.
- **PostgreSQL**: ledger records per request x R over what one vCPU writes per second (the
  batched writer into a real server, `tests/bench/ledger_bench.py`), at the same utilisation.
- **Lambda edge**: billed by wall time, not CPU: each request holds one execution environment
  for the edge's own time plus the core's and the upstream model's (Little's law: concurrency =
  R x duration). Priced at arm64 us-east-1 on-demand rates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

UTILISATION = 0.6  # the busiest a process, a Redis shard or a database vCPU should run
RATES = (1_000, 10_000, 100_000)
SECONDS_PER_MONTH = 30 * 24 * 3600
# AWS Lambda, arm64, us-east-1, on demand (aws.amazon.com/lambda/pricing, first tier).
LAMBDA_GB_SECOND_USD = 0.0000133334
LAMBDA_REQUEST_USD = 0.20 / 1_000_000
LAMBDA_DEFAULT_CONCURRENCY = 1_000  # the regional quota before a raise is asked for


@dataclass(frozen=True)
class Profile:
    """One feature profile's per-request figures, measured."""

    name: str
    edge_cpu_ms: float  # the edge process, per request
    core_cpu_ms: float  # the core process (all threads), per request
    redis_cpu_us: float  # the redis-server process, per request
    redis_round_trips: float  # calls the core makes to Redis per request
    redis_commands: float  # commands Redis runs per request (inside scripts too)
    ledger_records: float  # ledger records written per request


@dataclass(frozen=True)
class Inputs:
    """Everything the plan is computed from; `machine` and `date` say where it was measured."""

    machine: str
    date: str
    profiles: tuple[Profile, ...]
    hop_cpu_ms: float  # one bare pass-through hop's CPU per request: this machine's yardstick
    pg_records_per_vcpu_s: float  # batched ledger writes one PostgreSQL vCPU takes per second
    lambda_memory_mb: int  # the edge function's memory (1,769 MB is one vCPU)
    upstream_s: float  # an assumed mean model latency (non-streaming) the edge waits through

    def profile(self, name: str) -> Profile:
        return next(p for p in self.profiles if p.name == name)


@dataclass(frozen=True)
class Row:
    """What one profile needs at one rate."""

    profile: str
    rate: int
    core_processes: int
    edge_processes: int
    redis_shards: int
    redis_round_trips_s: int
    pg_vcpus: int
    lambda_concurrency: int
    lambda_usd_month: int


def processes(rate: float, cpu_ms: float) -> int:
    """One-core processes (an event loop each) for `rate` requests/s at `cpu_ms` each."""
    return max(1, math.ceil(rate * cpu_ms / 1000 / UTILISATION))


def redis_shards(rate: float, cpu_us: float) -> int:
    """Redis primaries (one core each) for `rate` requests/s at `cpu_us` of Redis each."""
    return max(1, math.ceil(rate * cpu_us / 1_000_000 / UTILISATION))


def pg_vcpus(rate: float, records: float, per_vcpu_s: float) -> int:
    return max(1, math.ceil(rate * records / per_vcpu_s / UTILISATION))


def lambda_duration_s(inputs: Inputs, profile: Profile) -> float:
    """One request's billed wall time at the edge: its own CPU scaled to the function's CPU
    share, the core's CPU (its time at least), and the upstream model's latency."""
    share = min(1.0, inputs.lambda_memory_mb / 1769)
    return profile.edge_cpu_ms / 1000 / share + profile.core_cpu_ms / 1000 + inputs.upstream_s


def lambda_monthly_usd(inputs: Inputs, profile: Profile, rate: float) -> float:
    seconds = lambda_duration_s(inputs, profile)
    per_request = seconds * inputs.lambda_memory_mb / 1024 * LAMBDA_GB_SECOND_USD
    return rate * SECONDS_PER_MONTH * (per_request + LAMBDA_REQUEST_USD)


def row(inputs: Inputs, profile: Profile, rate: int) -> Row:
    return Row(
        profile.name,
        rate,
        processes(rate, profile.core_cpu_ms),
        processes(rate, profile.edge_cpu_ms),
        redis_shards(rate, profile.redis_cpu_us) if profile.redis_commands else 0,
        round(rate * profile.redis_round_trips),
        pg_vcpus(rate, profile.ledger_records, inputs.pg_records_per_vcpu_s),
        math.ceil(rate * lambda_duration_s(inputs, profile)),
        round(lambda_monthly_usd(inputs, profile, rate)),
    )


def plan(inputs: Inputs) -> list[Row]:
    return [row(inputs, p, rate) for p in inputs.profiles for rate in RATES]


def predicted_throughput_per_core(profile: Profile) -> float:
    """Requests per second one fully busy core process serves (the simulation's check)."""
    return 1000 / profile.core_cpu_ms


def render(inputs: Inputs) -> str:
    """The plan as the Markdown table committed in infra/capacity/PLAN.md."""
    head = (
        "| profile | req/s | core processes | edge processes (containers) | Redis primaries "
        "| Redis round trips/s | PostgreSQL vCPUs | Lambda edge concurrency | Lambda edge $/month |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in plan(inputs):
        over = " (quota raise)" if r.lambda_concurrency > LAMBDA_DEFAULT_CONCURRENCY else ""
        lines.append(
            f"| {r.profile} | {r.rate:,} | {r.core_processes:,} | {r.edge_processes:,} "
            f"| {r.redis_shards:,} | {r.redis_round_trips_s:,} | {r.pg_vcpus:,} "
            f"| {r.lambda_concurrency:,}{over} | {r.lambda_usd_month:,} |"
        )
    return "\n".join(lines) + "\n"
