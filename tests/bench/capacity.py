"""The capacity plan's figures (issue 19), measured, and the plan rendered from them.

    python -m tests.bench.capacity measure [--rounds 8]   # writes infra/capacity/inputs.json
    python -m tests.bench.capacity plan                   # writes infra/capacity/PLAN.md
    python -m tests.bench.capacity simulate               # N cores on a Redis Cluster vs the model

`measure` runs each profile as an edge + core behind the bench's zero-latency fake upstream,
each with its own Redis (so Redis's CPU and commands are the profile's alone), driven in turn
with short wrk bursts whose order flips every round (tests/bench/interleaved.py's method):

- `plain`: `make bench`'s config (Redis state, tenant limits, one budget, ten routing rules,
  the SQLite ledger);
- `full`: plus the ledger in PostgreSQL, the response cache (every request a miss: unique
  prompts) and tracing at 1% to a loopback OTLP sink.

Per request: edge and core CPU (/proc), Redis's CPU (its process), the core's round trips to
Redis (interlock_redis_commands_total), the commands Redis ran (INFO commandstats, script
calls included) and the ledger records written. PostgreSQL's side comes from writing the same
records in batches into the tests' private server and timing its processes' CPU.

A bare Starlette+aiohttp pass-through hop (tests/bench/floor.py) takes the same bursts in the
same rounds: its CPU per request is the machine's yardstick. CPU figures differ threefold
between this workplace's VMs; the test that measures the inputs again compares interlock's CPU
over the hop's, which a faster or slower machine leaves alone.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from tests.bench import features, floor, load
from tests.bench import stack as bs
from tests.bench.capacity_model import Inputs, Profile, render
from tests.bench.ledger_bench import bench as ledger_bench
from tests.bench.procstats import cpu_seconds, tree_cpu_seconds
from tests.support.postgres_server import PostgresServer
from tests.support.prom import scrape, value

ROOT = Path(__file__).resolve().parents[2]
INPUTS = ROOT / "infra" / "capacity" / "inputs.json"
PLAN = ROOT / "infra" / "capacity" / "PLAN.md"
LAMBDA_MEMORY_MB = 512
UPSTREAM_S = 2.0  # an assumed mean model latency; the plan says so


@dataclasses.dataclass
class Turned:
    """One profile's stack and what its turns measured, per request."""

    name: str
    interlock: bs.Interlock
    script: Path
    redis_url: str
    redis_pid: int
    samples: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    def add(self, **figures: float) -> None:
        for key, figure in figures.items():
            self.samples.setdefault(key, []).append(figure)

    def median(self, key: str) -> float:
        return statistics.median(self.samples[key])


def _counters(t: Turned) -> tuple[float, float, float]:
    """The core's Redis round trips and ledger records so far, and Redis's commands."""
    found = scrape(f"http://127.0.0.1:{t.interlock.admin_port}")
    trips = value(found, "interlock_redis_commands_total") or 0.0
    written = value(found, "interlock_ledger_written_total") or 0.0
    commands = sum(n for name, n in bs.redis_commands(t.redis_url).items() if name != "info")
    return trips, written, float(commands)


def _burst(wrk: str, url: str, script: Path, burst: float, name: str) -> int:
    """One wrk burst at c=20; the requests it made (at least 1), or HarnessError on any
    failed request."""
    result = load.run_wrk(wrk, url, script, 20, burst)
    if result.errors:
        raise bs.HarnessError(f"{name}: {result.errors} of {result.requests} requests failed")
    return max(1, result.requests)


def _turn(wrk: str, t: Turned, burst: float) -> None:
    pids = t.interlock.pids
    cpu = {tier: cpu_seconds(pid) for tier, pid in pids.items()}
    redis_cpu = cpu_seconds(t.redis_pid)
    trips, written, commands = _counters(t)
    n = _burst(wrk, t.interlock.url, t.script, burst, t.name)
    time.sleep(0.5)  # the ledger's writer flushes every 0.2 s
    trips2, written2, commands2 = _counters(t)
    t.add(
        edge_cpu_ms=(cpu_seconds(pids["edge"]) - cpu["edge"]) * 1000 / n,
        core_cpu_ms=(cpu_seconds(pids["core"]) - cpu["core"]) * 1000 / n,
        redis_cpu_us=(cpu_seconds(t.redis_pid) - redis_cpu) * 1e6 / n,
        redis_round_trips=(trips2 - trips) / n,
        redis_commands=(commands2 - commands) / n,
        ledger_records=(written2 - written) / n,
    )


@dataclasses.dataclass
class Yardstick:
    """The bare hop, turned with the profiles: CPU per request of the least a hop can cost."""

    url: str
    pid: int
    samples: list[float] = dataclasses.field(default_factory=list)

    def turn(self, wrk: str, script: Path, burst: float) -> None:
        before = cpu_seconds(self.pid)
        n = _burst(wrk, self.url, script, burst, "hop")
        self.samples.append((cpu_seconds(self.pid) - before) * 1000 / n)


def _profiles(pg_url: str, sink_url: str) -> dict[str, dict[str, Any]]:
    return {"plain": {}, "full": features.full_overrides(pg_url, sink_url)}


def measure(rounds: int, burst: float) -> Inputs:
    workdir = Path(tempfile.mkdtemp(prefix="capacity-"))
    procs = bs.Processes(workdir)
    pg = PostgresServer(fsync=True).start()
    try:
        upstream, _ = bs.start_upstream(procs)
        sink_url, _ = floor.start_sink(procs)
        wrk = load.ensure_wrk()
        turned = []
        for name, overrides in _profiles(pg.database(), sink_url).items():
            redis_url, redis_pid = bs.start_redis(procs)
            interlock, script = features.start_stack(procs, name, upstream, redis_url, overrides)
            load.run_wrk(wrk, interlock.url, script, 10, 1)  # warm-up
            turned.append(Turned(name, interlock, script, redis_url, redis_pid))
        hop_url, hop_pids = floor.start_hops(procs, upstream, 1, "hop")
        hop = Yardstick(hop_url, hop_pids["hop"])
        hop.turn(wrk, turned[0].script, 1)  # warm-up
        for number in range(rounds):
            for t in turned if number % 2 == 0 else turned[::-1]:
                _turn(wrk, t, burst)
            hop.turn(wrk, turned[0].script, burst)
        pg_rate = _pg_records_per_vcpu_s(pg)
    finally:
        procs.stop_all()
        pg.remove()
    keys = [f.name for f in dataclasses.fields(Profile) if f.name != "name"]
    profiles = tuple(Profile(t.name, *(round(t.median(key), 4) for key in keys)) for t in turned)
    machine = f"{platform.machine()}, {_cpu_model()}, Python {platform.python_version()}"
    date = dt.date.today().isoformat()
    hop_cpu_ms = round(statistics.median(hop.samples), 4)
    return Inputs(machine, date, profiles, hop_cpu_ms, pg_rate, LAMBDA_MEMORY_MB, UPSTREAM_S)


def _pg_records_per_vcpu_s(pg: PostgresServer, records: int = 100_000) -> float:
    """Ledger records one PostgreSQL vCPU takes per second: the batched writer's records over
    the server processes' CPU while it writes them (fsync on, as in production)."""
    assert pg.process is not None
    url, pid = pg.database(), pg.process.pid
    before = tree_cpu_seconds(pid) + _reaped_cpu_seconds(pid)
    asyncio.run(ledger_bench(url, records, 2000, False))
    time.sleep(0.5)  # the writer's backend has exited: the postmaster reaps it
    spent = tree_cpu_seconds(pid) + _reaped_cpu_seconds(pid) - before
    return round(records / max(spent, 1e-3))


def _reaped_cpu_seconds(pid: int) -> float:
    """CPU of `pid`'s children that have exited and been waited for (cutime + cstime): a
    PostgreSQL backend's, once its connection closed."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def load_inputs(path: Path = INPUTS) -> Inputs:
    raw = orjson.loads(path.read_bytes())
    profiles = tuple(Profile(**p) for p in raw.pop("profiles"))
    return Inputs(profiles=profiles, **raw)


def save_inputs(inputs: Inputs, path: Path = INPUTS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(dataclasses.asdict(inputs), option=orjson.OPT_INDENT_2) + b"\n")


def plan_document(inputs: Inputs) -> str:
    """infra/capacity/PLAN.md: the inputs it was computed from, then the plan."""
    lines = [
        "# Capacity plan (generated: `python -m tests.bench.capacity plan`; do not edit)",
        "",
        f"Measured on {inputs.machine}, {inputs.date}, by `python -m tests.bench.capacity "
        "measure`. The model and its assumptions: `tests/bench/capacity_model.py`; how to read "
        "it: README, Performance.",
        "",
        "| profile | edge CPU ms/req | core CPU ms/req | Redis CPU µs/req | Redis round trips/req "
        "| Redis commands/req | ledger records/req |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for p in inputs.profiles:
        lines.append(
            f"| {p.name} | {p.edge_cpu_ms} | {p.core_cpu_ms} | {p.redis_cpu_us} "
            f"| {p.redis_round_trips} | {p.redis_commands} | {p.ledger_records} |"
        )
    lines += [
        "",
        f"PostgreSQL: {inputs.pg_records_per_vcpu_s:,.0f} ledger records per vCPU-second "
        f"(batched, fsync on). Lambda edge: {inputs.lambda_memory_mb} MB, arm64, and an assumed "
        f"mean model latency of {inputs.upstream_s} s that the edge waits through. A bare "
        f"Starlette+aiohttp pass-through hop took {inputs.hop_cpu_ms} ms CPU per request here: "
        "on another machine, scale the CPU figures by what the hop costs there.",
        "",
        render(inputs),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.capacity")
    parser.add_argument("command", choices=("measure", "plan", "simulate"))
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--burst", type=float, default=2.0)
    args = parser.parse_args()
    if args.command == "measure":
        save_inputs(measure(args.rounds, args.burst))
        print(f"wrote {INPUTS}")
    if args.command in ("measure", "plan"):
        PLAN.write_text(plan_document(load_inputs()), encoding="utf-8")
        print(f"wrote {PLAN}")
    if args.command == "simulate":
        from tests.bench.capacity_sim import simulate

        print(orjson.dumps(simulate(load_inputs()), option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
