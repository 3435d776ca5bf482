"""Issue 17's targets as ratios measured in one run, and the noise check that says whether the
run can be judged at all. Pure functions of the summary (tests/test_bench_verdicts.py).

Absolute figures do not carry across machines (the same commit measured 0.63 and 2.2 ms of CPU
per request on two VMs), ratios in one interleaved run do. The two-hop floor is the yardstick:
if its own ratio to direct calls leaves the band calibrated on a quiet run, a neighbour
disturbed the run, and no verdict is given (NOISY) until a re-run lands inside it.
"""

from __future__ import annotations

from typing import Any

FLOOR = "floor2"
PLAIN = "interlock"
FULL = "interlock-full"
LEAK_TOLERANCE_MB = 2.0

# floor2 p50 / direct p50 at c=1 (wrk -t1 -c1). Measured with `python -m tests.bench.calibrate`
# on the 2-vCPU development VM on 2026-12-02: in calm moments 8.2-40.9 (direct's p50 itself
# is bimodal, 0.021 or ~0.08 ms, depending on where the scheduler puts wrk and the upstream;
# floor2 0.6-0.9 ms); with five other workers loading the box 89-212 (the hops stretched to
# 3.5-6 ms). The band separates the two. PROVISIONAL: re-run calibrate on the quiet machine
# that produces the committed results and put its proposed band here (or --noise-band).
FLOOR_RATIO_BAND = (6.0, 60.0)

LIMITS = {
    "added_p50_vs_floor": 1.3,
    "added_p99_vs_floor": 1.5,
    "rps_vs_floor": 0.8,
    "rps_vs_portkey": 2.0,
    "added_p50_vs_portkey": 0.5,
    "full_rps_vs_litellm": 20.0,
    "full_cpu_vs_plain": 1.15,
    "edge_import_vs_deps": 1.5,
}


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is not positive (nothing to judge)."""
    if a is None or b is None or b <= 0:
        return None
    return round(a / b, 3)


def _get(summary: dict[str, Any], target: str, key: str) -> Any:
    return (summary.get(target) or {}).get(key)


def ttft_added(summary: dict[str, Any], target: str = PLAIN) -> float | None:
    """Time to first token added by `target` over direct: stream20, sequential, p50."""

    def ttft(name: str) -> float | None:
        streams = _get(summary, name, "streams") or {}
        return ((streams.get("stream20") or {}).get("sequential") or {}).get("ttft_p50_ms")

    mine, direct = ttft(target), ttft("direct")
    return None if mine is None or direct is None else round(mine - direct, 3)


def ttft_ratio(summary: dict[str, Any], target: str = PLAIN) -> float | None:
    """Stream time to first token added over the non-streaming latency added, both from one
    client (tests.bench.probe); without probe figures, the stream client's TTFT over wrk's."""
    probe = _get(summary, target, "probe") or {}
    same_client = ratio(probe.get("added_ttft_p50_ms"), probe.get("added_plain_p50_ms"))
    if same_client is not None:
        return same_client
    return ratio(ttft_added(summary, target), _get(summary, target, "added_p50_ms"))


def noise_check(
    summary: dict[str, Any], band: tuple[float, float] = FLOOR_RATIO_BAND
) -> dict[str, Any]:
    """The two-hop floor's c=1 p50 over direct's; ok None when either was not measured."""
    value = ratio(_get(summary, FLOOR, "p50_ms"), _get(summary, "direct", "p50_ms"))
    ok = None if value is None else band[0] <= value <= band[1]
    return {"floor_over_direct_p50": value, "band": list(band), "ok": ok}


def _check(name: str, value: float | None, limit: float, at_most: bool) -> dict[str, Any]:
    if value is None:
        verdict = "N/A"
    else:
        verdict = "PASS" if (value <= limit if at_most else value >= limit) else "FAIL"
    return {
        "target": name,
        "value": value,
        "limit": f"{'<=' if at_most else '>='} {limit:g}",
        "verdict": verdict,
    }


def rss_growth(summary: dict[str, Any], targets: tuple[str, ...] = (PLAIN, FULL)) -> float | None:
    """Largest RSS growth over repeated runs of any interlock gateway process (edge, core; not
    Redis, whose data legitimately grows with cache entries); None: not measured."""
    growths = [
        proc["growth"]
        for name in targets
        for label, proc in (_get(summary, name, "rss_mb") or {}).items()
        if label in ("edge", "core") and proc.get("growth") is not None
    ]
    return max(growths) if growths else None


# (target, numerator (stack, key), denominator (stack, key), limit key, at most?)
_RATIO_TARGETS = (
    (
        "added p50 c=1, interlock / two-hop floor",
        (PLAIN, "added_p50_ms"),
        (FLOOR, "added_p50_ms"),
        "added_p50_vs_floor",
        True,
    ),
    (
        "added p99 c=1, interlock / two-hop floor",
        (PLAIN, "added_p99_ms"),
        (FLOOR, "added_p99_ms"),
        "added_p99_vs_floor",
        True,
    ),
    (
        "throughput, interlock / two-hop floor",
        (PLAIN, "rps"),
        (FLOOR, "rps"),
        "rps_vs_floor",
        False,
    ),
    (
        "throughput, interlock / Portkey",
        (PLAIN, "rps"),
        ("portkey", "rps"),
        "rps_vs_portkey",
        False,
    ),
    (
        "added p50 c=1, interlock / Portkey",
        (PLAIN, "added_p50_ms"),
        ("portkey", "added_p50_ms"),
        "added_p50_vs_portkey",
        True,
    ),
    (
        "throughput, interlock full-feature / LiteLLM",
        (FULL, "rps"),
        ("litellm", "rps"),
        "full_rps_vs_litellm",
        False,
    ),
)


def check(
    summary: dict[str, Any], cold: dict[str, Any] | None, noisy: bool = False
) -> list[dict[str, Any]]:
    """Every issue-17 target: PASS / FAIL / N/A (not measured in this run) / NOISY (the noise
    check failed: a verdict would mean nothing)."""
    s = summary
    checks = [
        _check(name, ratio(_get(s, *num), _get(s, *den)), LIMITS[limit], at_most)
        for name, num, den, limit, at_most in _RATIO_TARGETS
    ]
    ttft = ttft_ratio(s)
    cpu = ratio(_get(s, FULL, "cpu_ms_per_req"), _get(s, PLAIN, "cpu_ms_per_req"))
    checks += [
        _check(
            "stream TTFT added / non-streaming added p50 (interlock, one client)", ttft, 1.0, True
        ),
        _check(
            "CPU/request, full-feature (tracing 1%) / plain", cpu, LIMITS["full_cpu_vs_plain"], True
        ),
        _check(
            "RSS growth over repeated runs, interlock edge/core (MB)",
            rss_growth(s),
            LEAK_TOLERANCE_MB,
            True,
        ),
        _check(
            "edge import / its third-party imports alone",
            (cold or {}).get("ratio"),
            LIMITS["edge_import_vs_deps"],
            True,
        ),
    ]
    if noisy:
        for item in checks:
            if item["verdict"] in ("PASS", "FAIL"):
                item["verdict"] = "NOISY"
    return checks


def ratios(summary: dict[str, Any]) -> dict[str, float | None]:
    """Every ratio the issue lists, interlock over each reference (None: not measured)."""
    out: dict[str, float | None] = {}
    for ref in ("floor1", FLOOR, "portkey", "litellm"):
        for key in ("added_p50_ms", "added_p99_ms", "rps", "cpu_ms_per_req"):
            out[f"interlock/{ref} {key}"] = ratio(
                _get(summary, PLAIN, key), _get(summary, ref, key)
            )
    for name in (FLOOR, PLAIN):
        out[f"{name} stream TTFT added / plain added (one client)"] = ttft_ratio(summary, name)
        out[f"{name} stream TTFT added (stream client) / plain added (wrk)"] = ratio(
            ttft_added(summary, name), _get(summary, name, "added_p50_ms")
        )
    for key in ("rps", "added_p50_ms", "cpu_ms_per_req"):
        out[f"interlock-full/litellm {key}"] = ratio(
            _get(summary, FULL, key), _get(summary, "litellm", key)
        )
        out[f"interlock-full/interlock {key}"] = ratio(
            _get(summary, FULL, key), _get(summary, PLAIN, key)
        )
    return {k: v for k, v in out.items() if v is not None}
