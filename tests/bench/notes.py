"""What the bench writes next to its figures: how each was measured, and checks made after
the rounds (usage lines, Redis round trips, loopback-only peers)."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import orjson

from tests.bench import litellm as litellm_proxy
from tests.bench import report, targets
from tests.bench.stack import redis_commands
from tests.bench.targets import Target
from tests.support.prom import Samples, scrape, value

USAGE = "interlock.usage"  # the core's per-request usage log line
NOTES = [
    "latency at c=1: wrk -t1 -c1 --latency (p50/p99 from wrk's histogram); added latency is "
    "the per-round difference to direct, median over rounds",
    "errors: wrk socket errors (connect/read/write/timeout) + HTTP status >= 400",
    "direct throughput is bounded by wrk itself: it only shows the fake upstream is no bottleneck",
    "CPU/request: utime+stime deltas from /proc around each throughput run; gateway procs = "
    "edge+core (interlock), all stack procs adds redis",
    "streams: asyncio (aiohttp) client in the harness process, include_usage on; TTFT = first "
    "non-empty content delta; total = [DONE]; every stream is checked for all chunks + usage",
    "RSS growth: last minus first of the RSS samples taken after every throughput run "
    "(rounds + repeats), after a warm-up that applies every load the rounds do (plain calls "
    f"at c=1 and c=50, each stream model at its concurrency); up to {report.LEAK_TOLERANCE_MB} "
    "MB counts as no growth",
]


TRIPS = "interlock_redis_commands_total"  # the core's own count: one per command it sends


def redis_snapshot(t: Target) -> dict[str, int]:
    """Redis's calls per command (INFO commandstats, which counts commands run inside Lua
    scripts too) and, under TRIPS, the round trips the core itself counted (/metrics)."""
    assert t.redis_url is not None
    counts = redis_commands(t.redis_url)
    if t.admin_url is not None:
        counts[TRIPS] = int(value(scrape(t.admin_url), TRIPS) or 0)
    return counts


def redis_note(before: dict[str, int], after: dict[str, int], requests: int) -> str:
    """Round trips per request come from the core's count: Redis's stats cannot tell a
    command sent by a client from one a script ran, which cost no round trip."""
    calls = {k: v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)}
    calls.pop("info", None)  # our own probes
    trips = calls.pop(TRIPS, 0) / max(1, requests)
    per_request = sum(calls.values()) / max(1, requests)
    top = ", ".join(f"{k} {v}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1])[:6])
    return (
        f"Redis round trips per gateway request: {trips:.2f} "
        f"({per_request:.2f} commands counting those inside Lua scripts: {top or 'none'})"
    )


def count_lines(path: Path, needle: str) -> int:
    with path.open(errors="replace") as handle:
        return sum(needle in line for line in handle)


def after_notes(
    t: Target, workdir: Path, usage_before: int, redis_before: dict[str, dict[str, int]]
) -> list[str]:
    notes: list[str] = []
    if t.name in ("litellm", "portkey"):
        targets.check_loopback(t.name, t.pids[t.name])
        notes.append(f"{t.name} held only loopback TCP sockets (checked at start and end)")
    if t.name == "litellm":
        notes.append(litellm_proxy.DESCRIPTION)
    if t.name == "interlock":
        lines = count_lines(workdir / "core.log", USAGE) - usage_before
        notes.append(f"usage accounting lines written by the core while measuring: {lines}")
        if t.redis_url:
            notes.append(redis_note(redis_before[t.name], redis_snapshot(t), lines))
        if t.admin_url is not None:
            notes.append(ledger_note(scrape(t.admin_url)))
    return notes


def ledger_note(found: Samples) -> str:
    """Whether the ledger's writer kept up: records still queued in memory at the end (a
    flush interval's worth, not a load's) and none spilled to disk."""
    written, queued, spilled = (
        int(value(found, f"interlock_ledger_{name}") or 0)
        for name in ("written_total", "queued", "spilled_total")
    )
    return (
        f"ledger writer after the rounds: {written} records written, {queued} still queued in "
        f"memory, {spilled} spilled to disk"
    )


def upstream_stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/stats", timeout=5) as response:
        stats: dict[str, int] = orjson.loads(response.read())
    return stats
