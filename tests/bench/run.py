"""`make bench`: measure interlock (edge + core) against the bare upstream, optionally LiteLLM.

    python -m tests.bench.run                     # direct + interlock
    python -m tests.bench.run --compare-litellm   # + LiteLLM, interleaved with the others
    python -m tests.bench.run --compare           # + one-, two-hop floors, full-feature interlock,
                                                  #   Portkey, LiteLLM, the feature ladder
    python -m tests.bench.run --quick             # short phases: a smoke test of the harness

Phases are interleaved per round (latency for every target, then throughput for every target,
then streams ...), so a noisy neighbour hits all targets alike and the ratios stay meaningful.
Latency at c=1 comes from wrk -t1 -c1 (HdrHistogram percentiles, microsecond resolution);
throughput from wrk at 50 connections; streams from an asyncio client; and one light client
that alternates plain calls and streams at c=1 (tests/bench/probe.py) for the stream target.
Exit code: 0 with a
report (even when targets fail), 2 when the harness itself broke, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tests.bench import litellm as litellm_proxy
from tests.bench import load, procstats, report, targets, verdicts
from tests.bench import portkey as portkey_gw
from tests.bench.machine import machine_info
from tests.bench.notes import (
    NOTES,
    USAGE,
    after_notes,
    count_lines,
    redis_snapshot,
    upstream_stats,
)
from tests.bench.probe import run_probe
from tests.bench.settings import Settings, settings_from
from tests.bench.stack import HarnessError, Processes, start_upstream
from tests.bench.targets import Target


class Bench:
    def __init__(self, settings: Settings, targets: list[Target], wrk: str, workdir: Path) -> None:
        self.s = settings
        self.targets = targets
        self.wrk = wrk
        for target in targets:
            body = load.unique_chat_body("fast") if target.unique else load.chat_body("fast")
            target.script = load.write_script(
                workdir / f"{target.name}-fast.lua",
                body,
                target.token,
                target.unique,
                target.headers,
            )
        self.reset()

    def reset(self) -> None:
        """Fresh sample lists (a re-run after a failed noise check starts over)."""
        for target in self.targets:
            target.raw = {
                "pids": dict(target.pids),
                "latency_c1": [],
                "throughput": [],
                "streams": {model: [] for model in self.s.stream_seq},
                "probe": [],
                "rss_idle": {},
                "rss_series": [],
            }

    def _say(self, text: str) -> None:
        print(f"  {dt.datetime.now():%H:%M:%S} {text}", flush=True)

    def latency(self, t: Target) -> None:
        r = load.run_wrk(self.wrk, t.url, t.script, 1, self.s.duration, threads=1)
        t.raw["latency_c1"].append(r.as_dict())
        self._say(f"{t.name:<9} c=1   p50 {r.p50_ms:.3f} ms  p99 {r.p99_ms:.3f} ms  ({r.requests})")

    def throughput(self, t: Target) -> None:
        # A slow peer on a busy machine may finish nothing within a short (--quick) phase at
        # c=50: one longer try before calling the harness broken.
        for seconds in (self.s.duration, max(10, 3 * self.s.duration)):
            before = procstats.cpu_snapshot(t.pids)
            r = load.run_wrk(
                self.wrk, t.url, t.script, self.s.concurrency, seconds, self.s.wrk_threads
            )
            cpu = procstats.cpu_delta(before, procstats.cpu_snapshot(t.pids))
            if r.requests:
                break
        rss = procstats.rss_snapshot(t.pids)
        if r.requests == 0:
            raise HarnessError(f"{t.name}: wrk completed no requests at all")
        t.raw["throughput"].append({**r.as_dict(), "cpu_s": cpu, "rss_mb": rss})
        t.raw["rss_series"].append(rss)
        per_req = sum(cpu.values()) * 1000 / r.requests
        self._say(
            f"{t.name:<9} c={self.s.concurrency}  {r.rps:8.0f} req/s  errors {r.errors}  "
            f"CPU {per_req:.3f} ms/req  RSS {rss}"
        )

    def streams(self, t: Target, model: str) -> None:
        seq, conc = load.run_streams(
            t.url, t.token, model, self.s.stream_seq[model], self.s.stream_conc[model], t.headers
        )
        t.raw["streams"][model].append({"sequential": asdict(seq), "concurrent": asdict(conc)})
        ttft = report.percentile([x.ttft_ms for x in seq.samples], 50)
        total = report.percentile([x.total_ms for x in seq.samples], 50)
        self._say(
            f"{t.name:<9} {model:<12} seq TTFT p50 {report.fmt(ttft)} ms, total p50 "
            f"{report.fmt(total, 1)} ms; errors {len(seq.errors) + len(conc.errors)}"
        )

    def probe(self, t: Target) -> None:
        result = run_probe(t.url, t.token, t.headers, self.s.probe_pairs).as_dict()
        t.raw["probe"].append(result)
        self._say(
            f"{t.name:<9} probe c=1 plain p50 {result['plain_p50_ms']:.3f} ms, stream TTFT p50 "
            f"{result['ttft_p50_ms']:.3f} ms"
        )

    def warm_up(self) -> None:
        """Every kind of load the rounds apply, once, before any sample: the RSS series is
        taken after each throughput run, and its first sample must not predate a workload
        (concurrent streams hold more at once than c=50 plain calls) that every later one
        has seen, or the series shows a warm-up step as growth."""
        for t in self.targets:
            load.run_wrk(self.wrk, t.url, t.script, 10, self.s.warmup, threads=1)
            load.run_wrk(self.wrk, t.url, t.script, self.s.concurrency, self.s.warmup)
        for model, concurrent in self.s.stream_conc.items():
            for t in self.targets:
                if t.streams:
                    load.run_streams(t.url, t.token, model, 1, concurrent, t.headers)

    def run(self) -> None:
        for t in self.targets:
            t.raw["rss_idle"] = procstats.rss_snapshot(t.pids)
        self._say("warm-up")
        self.warm_up()
        for number in range(1, self.s.rounds + 1):
            self._say(f"round {number}/{self.s.rounds}")
            for t in self.targets:
                self.latency(t)
            for t in self.targets:
                self.throughput(t)
            for model in self.s.stream_seq:
                for t in self.targets:
                    if t.streams:
                        self.streams(t, model)
            for t in self.targets:
                if t.streams:
                    self.probe(t)
        for number in range(1, self.s.leak_runs + 1):
            self._say(f"repeat {number}/{self.s.leak_runs} (RSS growth series)")
            for t in self.targets:
                self.throughput(t)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__)
    p.add_argument("--quick", action="store_true", help="short phases (smoke-test the harness)")
    p.add_argument("--duration", type=int, help="seconds per wrk phase (default 10, quick 2)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3, quick 1)")
    p.add_argument("--leak-runs", type=int, help="extra throughput runs for RSS growth")
    p.add_argument("--concurrency", type=int, default=50, help="connections for throughput")
    p.add_argument("--wrk-threads", type=int, default=1, help="wrk threads for throughput")
    p.add_argument("--compare-litellm", action="store_true", help="also measure LiteLLM proxy")
    p.add_argument(
        "--compare",
        action="store_true",
        help="issue 17: + two-hop floor, interlock full-feature, Portkey, LiteLLM, feature ladder",
    )
    p.add_argument("--no-features", action="store_true", help="skip the feature ladder")
    p.add_argument(
        "--noise-band",
        default=",".join(map(str, verdicts.FLOOR_RATIO_BAND)),
        help="LO,HI: the floor2/direct p50 ratio of an undisturbed run (python -m "
        "tests.bench.calibrate proposes one)",
    )
    p.add_argument(
        "--max-reruns", type=int, default=2, help="re-runs when the noise check fails (default 2)"
    )
    p.add_argument(
        "--only",
        action="append",
        choices=report.TARGET_NAMES,
        help="measure only this target (repeatable); added latency needs direct",
    )
    p.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    p.add_argument(
        "--setup",
        action="store_true",
        help="only install the tools (wrk; LiteLLM's venv and Portkey with --compare) and exit",
    )
    p.add_argument("--keep-logs", action="store_true", help="keep the work dir with all logs")
    args = p.parse_args(argv)
    if args.duration is not None and not 1 <= args.duration <= 600:
        p.error("--duration must be between 1 and 600 seconds")
    if args.rounds is not None and not 1 <= args.rounds <= 50:
        p.error("--rounds must be between 1 and 50")
    if args.leak_runs is not None and not 0 <= args.leak_runs <= 50:
        p.error("--leak-runs must be between 0 and 50")
    if not 1 <= args.concurrency <= 1000:
        p.error("--concurrency must be between 1 and 1000")
    try:
        low, high = (float(x) for x in args.noise_band.split(","))
    except ValueError:
        p.error("--noise-band must be LO,HI (two numbers)")
    if not 0 < low < high:
        p.error("--noise-band: expected 0 < LO < HI")
    args.noise_band = (low, high)
    return args


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with INT ignored
    names = args.only or ["direct", "interlock", *(["litellm"] if args.compare_litellm else [])]
    if args.compare and not args.only:
        names += ["floor1", "floor2", "interlock-full", "portkey", "litellm"]
    names = [n for n in report.TARGET_NAMES if n in names]
    ladder = args.compare and not args.no_features and "interlock" in names
    settings = settings_from(args)
    started = dt.datetime.now(dt.UTC)
    command = (
        "python -m tests.bench.run"
        + ("" if argv == [] else " ")
        + shlex.join(sys.argv[1:] if argv is None else argv)
    )
    if args.setup:
        return _setup(args, names)
    try:
        wrk = load.ensure_wrk(install=not args.no_install)
    except HarnessError as exc:
        print(f"bench harness error: {exc}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="interlock-bench-"))
    procs = Processes(workdir)
    failed = True
    try:
        extra = (ladder, args.max_reruns, args.noise_band)
        result = _run(wrk, settings, names, procs, workdir, extra)
        result.update(command=command.strip(), started=started.isoformat(timespec="seconds"))
        result["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        print()
        print(report.render_text(result))
        json_path, md_path = report.write_files(result)
        print(f"\nresults: {json_path} and {md_path} (also latest.json / latest.md)")
        failed = False
        return 0
    except HarnessError as exc:
        print(f"\nbench harness error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        if failed or args.keep_logs:
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _setup(args: argparse.Namespace, names: list[str]) -> int:
    try:
        print(f"wrk: {load.ensure_wrk(install=not args.no_install)}")
        if "litellm" in names:
            python = litellm_proxy.ensure_venv()
            print(f"LiteLLM {litellm_proxy.version(python)} in {litellm_proxy.VENV}")
        if "portkey" in names:
            print(f"Portkey {portkey_gw.ensure_installed()} ({portkey_gw.version()})")
    except HarnessError as exc:
        print(f"bench setup error: {exc}", file=sys.stderr)
        return 2
    return 0


def _run(
    wrk: str,
    settings: Settings,
    names: list[str],
    procs: Processes,
    workdir: Path,
    extra: tuple[bool, int, tuple[float, float]] = (False, 0, verdicts.FLOOR_RATIO_BAND),
) -> dict[str, Any]:
    ladder, max_reruns, band = extra
    machine = machine_info()
    notes = list(NOTES)
    if machine["loadavg_start"][0] > 0.5 * (machine["nproc"] or 1):
        notes.append("the machine was busy when the run started (see load average): noisy numbers")
    print(f"bench: targets {', '.join(names)}; work dir {workdir}", flush=True)
    upstream = start_upstream(procs)
    run = targets.start(names, procs, upstream, settings.import_runs)
    notes += run.notes
    run.versions["wrk"] = load.wrk_version(wrk)
    for t in run.targets:
        load.validate(t.url, t.token, t.name, t.headers, t.streams)
    before = upstream_stats(upstream[0])
    redis_before = {t.name: redis_snapshot(t) for t in run.targets if t.redis_url}
    usage_before = count_lines(workdir / "core.log", USAGE) if "interlock" in names else 0
    bench = Bench(settings, run.targets, wrk, workdir)
    summary, noise = _measure(bench, max_reruns, band)
    procs.check_alive()
    after = upstream_stats(upstream[0])
    if after["chat_requests"] <= before["chat_requests"]:
        raise HarnessError("the upstream saw no requests: are the gateways really forwarding?")
    if "interlock" in names and after["include_usage_requests"] <= before["include_usage_requests"]:
        raise HarnessError("no streamed request asked the upstream for usage (include_usage)")
    for t in run.targets:
        notes += after_notes(t, workdir, usage_before, redis_before)
    notes += _full_notes(run)
    quick = settings.duration <= 2
    ladder_rows = targets.ladder(wrk, quick, procs, upstream[0], run) if ladder else []
    machine["loadavg_end"] = os.getloadavg()
    return {
        "schema": "interlock-bench/2",
        "machine": machine,
        "versions": run.versions,
        "settings": asdict(settings),
        "targets_run": names,
        "edge_import": run.edge_import,
        "cold_start": run.cold_start,
        "summary": summary,
        "targets": report.check_targets(summary, run.edge_import),
        "noise": noise,
        "targets17": verdicts.check(summary, run.cold_start, noisy=noise["ok"] is False),
        "ratios": verdicts.ratios(summary),
        "features": ladder_rows,
        "upstream_requests": after["chat_requests"],
        "compare": report.compare(summary),
        "notes": notes,
        "raw": {t.name: t.raw for t in run.targets},
    }


def _full_notes(run: targets.Started) -> list[str]:
    """Proof the full-feature stack really exported spans and wrote its PostgreSQL ledger."""
    if not (run.sink_url and run.pg_url):
        return []
    return [
        f"interlock-full: OTLP sink received {upstream_stats(run.sink_url)} (1% sampling); "
        f"ledger records in PostgreSQL: {targets.ledger_rows(run.pg_url)}"
    ]


def _measure(
    bench: Bench, max_reruns: int, band: tuple[float, float]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Runs the rounds; re-runs them (bounded) while the two-hop floor's ratio to direct is
    out of its calibrated band: a disturbed run is measured again, not judged."""
    for attempt in range(1, max_reruns + 2):
        if attempt > 1:
            bench.reset()
        bench.run()
        summary = report.summarize({t.name: t.raw for t in bench.targets})
        noise = {**verdicts.noise_check(summary, band), "attempts": attempt}
        if noise["ok"] is not False:
            break
        bench._say(
            f"noise check failed (floor2/direct p50 {noise['floor_over_direct_p50']}, band "
            f"{noise['band']}): the machine is too noisy; "
            + ("re-running" if attempt <= max_reruns else "giving up, no verdicts")
        )
    return summary, noise


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"bench finished in {time.monotonic() - started:.0f} s (exit {code})", file=sys.stderr)
    sys.exit(code)
