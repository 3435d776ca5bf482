"""Calibrates the noise check: the two-hop floor's c=1 p50 over direct's, measured N times.

    python -m tests.bench.calibrate [--runs 5] [--duration 5]

Run it on the machine that will produce the committed results, when it is quiet. It prints each
ratio and a proposed band (the lowest over 1.25, the highest times 1.25): put that band in
tests/bench/verdicts.py (FLOOR_RATIO_BAND) or pass it with `run --noise-band LO,HI`. A run
whose floor ratio leaves the band was disturbed, and the bench measures again.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from tests.bench import floor, load
from tests.bench.stack import Processes, start_upstream


def propose(ratios: list[float], margin: float = 1.25) -> tuple[float, float]:
    """The band a quiet machine's runs fall in, widened by `margin` on both sides."""
    return round(min(ratios) / margin, 2), round(max(ratios) * margin, 2)


def measure(runs: int, duration: int) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="bench-calibrate-") as tmp:
        procs = Processes(Path(tmp))
        try:
            upstream, _ = start_upstream(procs)
            hops, _ = floor.start_hops(procs, upstream, 2, "hop")
            wrk = load.ensure_wrk()
            direct = load.write_script(Path(tmp) / "d.lua", load.chat_body("fast"), None)
            load.run_wrk(wrk, hops, direct, 10, 2)  # warm-up
            ratios = []
            for number in range(runs):
                a = load.run_wrk(wrk, upstream, direct, 1, duration).p50_ms
                b = load.run_wrk(wrk, hops, direct, 1, duration).p50_ms
                ratios.append(round(b / a, 3))
                print(f"run {number + 1}: direct {a:.3f} ms, floor2 {b:.3f} ms, ratio {ratios[-1]}")
            return ratios
        finally:
            procs.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5)
    args = parser.parse_args()
    ratios = measure(args.runs, args.duration)
    print(f"median {statistics.median(ratios)}; proposed band {propose(ratios)}")


if __name__ == "__main__":
    main()
