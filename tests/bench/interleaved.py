"""Interleaved A/B of CPU per request: several interlock stacks side by side, driven in turn.

    python -m tests.bench.interleaved --stack head
    python -m tests.bench.interleaved --stack base=/path/to/other/checkout --stack head
    python -m tests.bench.interleaved --stack 'off:{"ledger": {"enabled": false}}' --stack on

The response cache, hits against misses (every request of a `--unique` stack has a new prompt,
so it misses; the others repeat one prompt, so they hit after the first), and a stack without
the cache, to see what the lookup on a miss costs:

    python -m tests.bench.interleaved --unique off --unique miss --stack off \
        --stack 'miss:{"cache": {"enabled": true}}' --stack 'hit:{"cache": {"enabled": true}}'

On a shared VM, whole `make bench` runs minutes apart differ by up to ~25%. Here every stack
runs at once (one fake upstream, one Redis) and the load goes to each in turn, in short `wrk`
bursts whose order alternates every round, so drift hits all stacks alike; each stack's CPU per
request (utime + stime of its edge and core, from /proc) and its c=1 p50 are medians over the
rounds, and each round's difference to the first stack is reported too.

A stack is `name`, `name=<checkout>` (that tree's code: e.g. a `git worktree` of an older
commit), `name:<json>` (this tree, with those top-level config sections merged over the
bench's config, as in `make bench`) or `name=<checkout>:<json>` (both).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from tests.bench import load
from tests.bench import stack as bs
from tests.bench.procstats import cpu_seconds, threads_cpu_seconds


@dataclass
class Variant:
    name: str
    tree: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    unique: bool = False  # a new prompt per request (tests.bench.load.unique_chat_body)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    # The core's CPU per request split: its event loop's thread, its other threads.
    split: dict[str, list[float]] = field(default_factory=dict)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)

    @classmethod
    def parse(cls, spec: str) -> Variant:
        if ":" in spec and (spec.index(":") < spec.index("=") if "=" in spec else True):
            name, raw = spec.split(":", 1)
            return cls(name, overrides=orjson.loads(raw))
        if "=" in spec:
            name, tree = spec.split("=", 1)
            tree, _, raw = tree.partition(":")  # name=<checkout>:<json>: both
            overrides = orjson.loads(raw) if raw else {}
            return cls(name, tree=Path(tree).resolve(), overrides=overrides)
        return cls(spec)


def _start(variant: Variant, workdir: Path, upstream: str, redis: str) -> tuple[bs.Interlock, Path]:
    workdir.mkdir(parents=True)
    procs = bs.Processes(workdir)
    interlock = bs.Interlock(procs, upstream, redis)
    raw = yaml.safe_load(interlock.config_path.read_text(encoding="utf-8"))
    raw.update(variant.overrides)
    interlock.config_path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    if variant.tree is not None:
        tree = variant.tree
        interlock.env["PYTHONPATH"] = str(tree)
        spawn = procs.spawn
        procs.spawn = lambda name, argv, env, cwd=tree: spawn(name, argv, env, cwd)  # type: ignore[method-assign]
    interlock.start()
    body = load.unique_chat_body("fast") if variant.unique else load.chat_body("fast")
    script = load.write_script(workdir / "chat.lua", body, interlock.token, variant.unique)
    return interlock, script


def _round(wrk: str, variant: Variant, interlock: bs.Interlock, script: Path, burst: int) -> None:
    before = {tier: cpu_seconds(pid) for tier, pid in interlock.pids.items()}
    threads_before = threads_cpu_seconds(interlock.pids["core"])
    result = load.run_wrk(wrk, interlock.url, script, 20, burst)
    threads_after = threads_cpu_seconds(interlock.pids["core"])
    for part, was, now in zip(("loop", "threads"), threads_before, threads_after, strict=True):
        variant.split.setdefault(part, []).append((now - was) * 1000 / max(1, result.requests))
    if result.errors:  # a figure over failed requests measures the wrong path
        raise bs.HarnessError(f"{variant.name}: {result.errors} of {result.requests} failed")
    for tier, pid in interlock.pids.items():
        spent_ms = (cpu_seconds(pid) - before[tier]) * 1000
        variant.cpu.setdefault(tier, []).append(spent_ms / max(1, result.requests))
    alone = load.run_wrk(wrk, interlock.url, script, 1, 1)
    variant.p50.append(alone.p50_ms)
    variant.p99.append(alone.p99_ms)


def _report(variants: list[Variant]) -> None:
    first = variants[0]
    first_total = [sum(t) for t in zip(*first.cpu.values(), strict=True)]
    for variant in variants:
        totals = [sum(t) for t in zip(*variant.cpu.values(), strict=True)]
        parts = ", ".join(
            f"{tier} {statistics.median(values):.3f}" for tier, values in variant.cpu.items()
        )
        split = "/".join(f"{statistics.median(v):.3f}" for v in variant.split.values())
        parts += f" [loop/threads {split}]"
        line = f"{variant.name:>10}: CPU/req {statistics.median(totals):.3f} ms ({parts}); "
        line += f"c=1 p50 {statistics.median(variant.p50):.3f} ms"
        line += f", p99 {statistics.median(variant.p99):.3f} ms"
        if variant is not first:
            diffs = [mine - theirs for mine, theirs in zip(totals, first_total, strict=True)]
            line += f"; minus {first.name}, per round median {statistics.median(diffs):+.3f} ms"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", action="append", required=True, help="name[=tree|:json]")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--burst", type=int, default=2, help="seconds of c=20 load per turn")
    parser.add_argument(
        "--unique", action="append", default=[], help="a stack whose prompts never repeat"
    )
    args = parser.parse_args()
    variants = [Variant.parse(spec) for spec in args.stack]
    for variant in variants:
        variant.unique = variant.name in args.unique
    workdir = Path(tempfile.mkdtemp(prefix="interleaved-"))
    procs = bs.Processes(workdir)
    try:
        redis, _ = bs.start_redis(procs)
        upstream, _ = bs.start_upstream(procs)
        wrk = load.ensure_wrk()
        stacks = []
        for variant in variants:
            interlock, script = _start(variant, workdir / variant.name, upstream, redis)
            procs.children += interlock.procs.children
            load.run_wrk(wrk, interlock.url, script, 10, 1)  # warm-up
            stacks.append((variant, interlock, script))
        for number in range(args.rounds):
            for variant, interlock, script in stacks if number % 2 == 0 else stacks[::-1]:
                _round(wrk, variant, interlock, script, args.burst)
        _report(variants)
    finally:
        procs.stop_all()


if __name__ == "__main__":
    main()
