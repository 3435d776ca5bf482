"""The full-feature profile, and the cost of each feature on its own (a ladder of stacks).

`full_overrides` is what a production operator turns on beyond `make bench`'s config (which
already has Redis state, tenant limits, a budget and ten routing rules): the ledger in
PostgreSQL, the response cache (driven with unique prompts: every lookup misses and stores),
and tracing exported over OTLP/HTTP to a loopback sink at 1% sampling.

The ladder: stacks that each add one feature to the one before, from a bare interlock (state in
memory, no limits, budgets, rules, ledger, cache or tracing) up to the full profile, and one
more with tracing at 100%. All run at once behind one fake upstream; load goes to each in turn
in short wrk bursts whose order flips every round (as tests/bench/interleaved.py does), so a
noisy neighbour hits all steps alike. A feature's cost is the per-round difference to the step
below (CPU per request of edge + core at c=20; p50 at c=1), median over rounds.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.bench import load
from tests.bench import stack as bs
from tests.bench.procstats import cpu_seconds


def tracing(sink_url: str, ratio: float) -> dict[str, Any]:
    return {"enabled": True, "endpoint": f"{sink_url}/v1/traces", "sample_ratio": ratio}


def full_overrides(pg_url: str, sink_url: str, ratio: float = 0.01) -> dict[str, Any]:
    """Top-level config sections merged over bench_config for the full-feature profile."""
    return {
        "ledger": {"enabled": True, "url": pg_url},
        "cache": {"enabled": True},
        "tracing": tracing(sink_url, ratio),
    }


_BARE = {"limits": {}, "budgets": {}, "routing": {}, "ledger": {"enabled": False}}


def ladder(pg_url: str, sink_url: str) -> list[tuple[str, dict[str, Any], bool]]:
    """(step name, config overrides, Redis on) from bare to full; each adds one feature."""
    base = bs.bench_config("http://x", Path("/x"), 1, 2, 3)
    steps: list[tuple[str, dict[str, Any], bool]] = [("bare", dict(_BARE), False)]
    adds: list[tuple[str, dict[str, Any]]] = [
        ("+redis", {}),
        ("+limits", {"limits": base["limits"]}),
        ("+budget", {"budgets": base["budgets"]}),
        ("+routing", {"routing": base["routing"]}),
        ("+ledger-pg", {"ledger": {"enabled": True, "url": pg_url}}),
        ("+cache-miss", {"cache": {"enabled": True}}),
        ("+tracing-1%", {"tracing": tracing(sink_url, 0.01)}),
    ]
    current = dict(_BARE)
    for name, add in adds:
        current = {**current, **add}
        steps.append((name, dict(current), True))
    steps.append(("tracing-100%", {**current, "tracing": tracing(sink_url, 1.0)}, True))
    return steps


@dataclass
class Step:
    name: str
    interlock: bs.Interlock
    script: Path
    cpu: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)


def start_stack(
    procs: bs.Processes,
    name: str,
    upstream: str,
    redis_url: str | None,
    overrides: dict[str, Any],
) -> tuple[bs.Interlock, Path]:
    """An interlock (edge + core) with `overrides` merged over the bench config; no Redis when
    `redis_url` is None (state in memory). Its processes join `procs` (stopped with them)."""
    workdir = procs.workdir / name
    workdir.mkdir(parents=True, exist_ok=True)
    own = bs.Processes(workdir)
    interlock = bs.Interlock(own, upstream, redis_url or "")
    raw = yaml.safe_load(interlock.config_path.read_text(encoding="utf-8"))
    raw.update(overrides)
    interlock.config_path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    if redis_url is None:
        interlock.env.pop("REDIS_URL", None)
    try:
        interlock.start()
    finally:
        procs.children += own.children
    body = load.unique_chat_body("fast")
    script = load.write_script(workdir / "chat.lua", body, interlock.token, unique=True)
    return interlock, script


def _turn(wrk: str, step: Step, burst: float) -> None:
    pids = step.interlock.pids
    before = sum(cpu_seconds(pid) for pid in pids.values())
    result = load.run_wrk(wrk, step.interlock.url, step.script, 20, burst)
    spent = sum(cpu_seconds(pid) for pid in pids.values()) - before
    step.cpu.append(spent * 1000 / max(1, result.requests))
    step.p50.append(load.run_wrk(wrk, step.interlock.url, step.script, 1, burst).p50_ms)


def measure(
    wrk: str, steps: list[Step], rounds: int, burst: float, say: Callable[[str], None]
) -> None:
    """Warm-up, then `rounds` turns of every step, the order flipped each round."""
    for step in steps:
        load.run_wrk(wrk, step.interlock.url, step.script, 10, 1)  # warm-up
    for number in range(rounds):
        say(f"feature ladder round {number + 1}/{rounds}")
        for step in steps if number % 2 == 0 else steps[::-1]:
            _turn(wrk, step, burst)


def summarize(steps: list[Step]) -> list[dict[str, Any]]:
    """Per step: medians, and the per-round difference to the step below (the feature's cost).
    tracing-100% is compared with +tracing-1%'s predecessor (tracing off)."""
    out: list[dict[str, Any]] = []
    by_name = {s.name: s for s in steps}
    for index, step in enumerate(steps):
        row: dict[str, Any] = {
            "step": step.name,
            "cpu_ms_per_req": round(statistics.median(step.cpu), 4),
            "p50_ms": round(statistics.median(step.p50), 4),
        }
        below = steps[index - 1] if index else None
        if step.name == "tracing-100%" and "+cache-miss" in by_name:
            below = by_name["+cache-miss"]
        if below is not None:
            row["vs"] = below.name
            row["added_cpu_ms"] = _diff(step.cpu, below.cpu)
            row["added_p50_ms"] = _diff(step.p50, below.p50)
        out.append(row)
    return out


def _diff(mine: list[float], theirs: list[float]) -> float:
    return round(statistics.median(a - b for a, b in zip(mine, theirs, strict=True)), 4)
