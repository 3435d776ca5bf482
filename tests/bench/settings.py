"""What one `make bench` run does: phase lengths, rounds, stream counts (`--quick` shortens
every phase to smoke-test the harness)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Settings:
    duration: int  # seconds per wrk phase
    rounds: int
    leak_runs: int  # extra throughput runs after the rounds, for the RSS growth series
    concurrency: int
    wrk_threads: int
    warmup: float
    stream_seq: dict[str, int] = field(default_factory=dict)
    stream_conc: dict[str, int] = field(default_factory=dict)
    import_runs: int = 5
    probe_pairs: int = 200  # c=1 plain calls and streams per round, one client (tests.bench.probe)


def settings_from(args: argparse.Namespace) -> Settings:
    quick = args.quick
    return Settings(
        duration=args.duration or (2 if quick else 10),
        rounds=args.rounds or (1 if quick else 3),
        leak_runs=args.leak_runs if args.leak_runs is not None else (2 if quick else 3),
        concurrency=args.concurrency,
        wrk_threads=args.wrk_threads,
        warmup=1.0 if quick else 3.0,
        stream_seq={"stream20": 10 if quick else 50, "stream64x20": 2 if quick else 5},
        stream_conc={"stream20": 10 if quick else 50, "stream64x20": 5 if quick else 20},
        import_runs=3 if quick else 7,
        probe_pairs=30 if quick else 200,
    )
