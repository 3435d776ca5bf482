"""Issue 17's PASS/FAIL logic of the bench (tests/bench/verdicts.py): pure functions of a
summary, checked on hand-made summaries that sit on either side of every limit."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.bench import calibrate, coldstart, features, report, verdicts


def _target(**values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"rss_mb": {}, "streams": {}}
    return {**base, **values}


def _streams(ttft: float) -> dict[str, Any]:
    return {"stream20": {"sequential": {"ttft_p50_ms": ttft}}}


def good_summary() -> dict[str, Any]:
    """Every issue-17 target met, with a margin."""
    return {
        "direct": _target(p50_ms=0.2, rps=50000.0, streams=_streams(0.3)),
        "floor2": _target(p50_ms=1.0, added_p50_ms=0.8, added_p99_ms=1.6, rps=2000.0),
        "interlock": _target(
            p50_ms=1.1,
            added_p50_ms=0.9,
            added_p99_ms=2.0,
            rps=1800.0,
            cpu_ms_per_req=0.5,
            streams=_streams(1.0),
            rss_mb={"edge": {"growth": 0.3}, "core": {"growth": 1.0}},
        ),
        "interlock-full": _target(
            rps=1700.0, cpu_ms_per_req=0.55, rss_mb={"core": {"growth": 0.1}}
        ),
        "portkey": _target(added_p50_ms=2.5, rps=800.0),
        "litellm": _target(added_p50_ms=20.0, rps=60.0),
    }


def _verdicts(summary: dict[str, Any], cold: dict[str, Any] | None = None) -> dict[str, str]:
    return {c["target"]: c["verdict"] for c in verdicts.check(summary, cold)}


def test_all_targets_pass_when_every_ratio_is_inside_its_limit() -> None:
    result = _verdicts(good_summary(), {"ratio": 1.2})
    assert set(result.values()) == {"PASS"}, result
    assert len(result) == 10


@pytest.mark.parametrize(
    ("target", "key", "value", "failing"),
    [
        ("interlock", "added_p50_ms", 1.05, "added p50 c=1, interlock / two-hop floor"),
        ("interlock", "added_p99_ms", 2.5, "added p99 c=1, interlock / two-hop floor"),
        ("floor2", "rps", 2300.0, "throughput, interlock / two-hop floor"),
        ("portkey", "rps", 950.0, "throughput, interlock / Portkey"),
        ("portkey", "added_p50_ms", 1.7, "added p50 c=1, interlock / Portkey"),
        ("litellm", "rps", 90.0, "throughput, interlock full-feature / LiteLLM"),
        (
            "interlock-full",
            "cpu_ms_per_req",
            0.58,
            "CPU/request, full-feature (tracing 1%) / plain",
        ),
    ],
)
def test_each_ratio_fails_just_past_its_limit(
    target: str, key: str, value: float, failing: str
) -> None:
    summary = good_summary()
    summary[target][key] = value
    result = _verdicts(summary, {"ratio": 1.2})
    assert result[failing] == "FAIL"
    assert [k for k, v in result.items() if v == "FAIL"] == [failing]


def test_stream_ttft_added_is_judged_against_the_non_streaming_added_p50() -> None:
    summary = good_summary()
    assert verdicts.ttft_added(summary) == 0.7
    summary["interlock"]["streams"] = _streams(1.25)  # 0.95 ms added > 0.9 ms
    name = "stream TTFT added / non-streaming added p50 (interlock, one client)"
    assert _verdicts(summary)[name] == "FAIL"


def test_stream_ttft_is_judged_on_the_one_client_probe_when_it_ran() -> None:
    """The probe's plain calls and streams share a client: its ratio decides; the stream
    client's TTFT over wrk's latency is then only reported."""
    summary = good_summary()
    summary["interlock"]["streams"] = _streams(5.0)  # 4.7 ms added by the stream client
    probe = {"added_plain_p50_ms": 2.5, "added_ttft_p50_ms": 2.4}
    summary["interlock"]["probe"] = probe
    name = "stream TTFT added / non-streaming added p50 (interlock, one client)"
    assert verdicts.ttft_ratio(summary) == 0.96
    assert _verdicts(summary)[name] == "PASS"
    assert verdicts.ratios(summary)[
        "interlock stream TTFT added (stream client) / plain added (wrk)"
    ] == pytest.approx(4.7 / 0.9, abs=0.001)
    summary["interlock"]["probe"] = {**probe, "added_ttft_p50_ms": 2.6}
    assert _verdicts(summary)[name] == "FAIL"


def test_rss_growth_on_any_interlock_gateway_process_fails() -> None:
    summary = good_summary()
    summary["interlock-full"]["rss_mb"]["redis"] = {"growth": 9.0}  # cache entries: data
    assert verdicts.rss_growth(summary) == 1.0
    summary["interlock-full"]["rss_mb"]["edge"] = {"growth": 2.5}
    assert verdicts.rss_growth(summary) == 2.5
    assert _verdicts(summary)["RSS growth over repeated runs, interlock edge/core (MB)"] == "FAIL"


def test_edge_import_ratio() -> None:
    name = "edge import / its third-party imports alone"
    assert _verdicts(good_summary(), {"ratio": 1.6})[name] == "FAIL"
    assert _verdicts(good_summary(), None)[name] == "N/A"


def test_missing_targets_give_not_applicable_never_a_verdict() -> None:
    summary = {k: v for k, v in good_summary().items() if k in ("direct", "interlock")}
    result = _verdicts(summary)
    assert result["throughput, interlock / Portkey"] == "N/A"
    assert result["added p50 c=1, interlock / two-hop floor"] == "N/A"


def test_a_negative_or_zero_reference_is_not_judged() -> None:
    assert verdicts.ratio(1.0, 0.0) is None
    assert verdicts.ratio(1.0, -0.2) is None
    assert verdicts.ratio(None, 1.0) is None
    assert verdicts.ratio(3.0, 2.0) == 1.5


def test_noise_check_band_and_noisy_verdicts() -> None:
    summary = good_summary()
    low, high = verdicts.FLOOR_RATIO_BAND
    summary["floor2"]["p50_ms"] = summary["direct"]["p50_ms"] * (low + high) / 2
    assert verdicts.noise_check(summary)["ok"] is True
    summary["floor2"]["p50_ms"] = summary["direct"]["p50_ms"] * high * 1.5
    noise = verdicts.noise_check(summary)
    assert noise["ok"] is False
    assert noise["floor_over_direct_p50"] == pytest.approx(high * 1.5, rel=1e-3)
    judged = verdicts.check(summary, {"ratio": 1.2}, noisy=True)
    assert {c["verdict"] for c in judged} == {"NOISY"}
    del summary["floor2"]
    assert verdicts.noise_check(summary)["ok"] is None


def test_ratios_list_every_reference_that_was_measured() -> None:
    out = verdicts.ratios(good_summary())
    assert out["interlock/floor2 rps"] == 0.9
    assert out["interlock/portkey added_p50_ms"] == 0.36
    assert out["interlock-full/litellm rps"] == pytest.approx(28.333, rel=1e-3)
    assert not any(key.startswith("interlock/floor1") for key in out)


def test_importtime_parsing_and_third_party_selection() -> None:
    stderr = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       120 |        120 |   _io\n"
        "import time:      2000 |       5000 | starlette.routing\n"
        "import time:       300 |        300 |     yaml\n"
        "import time:       900 |       9000 | edge.main\n"
        "import time:        50 |         50 | __editable___x_finder\n"
    )
    rows = coldstart.parse_importtime(stderr)
    assert rows[1] == ("starlette.routing", 2000, 5000)
    names = [m for m, _, _ in rows]
    picked = coldstart.third_party(names, frozenset({"_io"}), frozenset({"__editable___x_finder"}))
    assert picked == ["starlette.routing", "yaml"]
    assert coldstart.top_entries(rows, 1) == [
        {"module": "starlette.routing", "self_ms": 2.0, "cum_ms": 5.0}
    ]


def test_feature_ladder_adds_one_feature_per_step() -> None:
    steps = features.ladder("postgresql://pg/db", "http://127.0.0.1:9")
    names = [name for name, _, _ in steps]
    assert names[0] == "bare" and names[-2] == "+tracing-1%" and names[-1] == "tracing-100%"
    full = features.full_overrides("postgresql://pg/db", "http://127.0.0.1:9")
    last = steps[-2][1]
    assert {k: last[k] for k in full} == full
    assert steps[0][2] is False and all(redis for _, _, redis in steps[1:])
    for (_, below, _), (_, above, _) in itertools.pairwise(steps[:-1]):
        changed = {k for k in above if above.get(k) != below.get(k)}
        assert len(changed) <= 1, changed


def test_calibration_proposes_a_band_around_the_quiet_runs() -> None:
    assert calibrate.propose([30.0, 40.0, 35.0]) == (24.0, 50.0)


def test_import_self_time_is_grouped_by_owner() -> None:
    rows = [("edge.app", 3000, 9000), ("starlette", 2000, 2000), ("json", 500, 500)]
    groups = coldstart.by_group(rows, frozenset({"json"}))
    assert groups == {"ours": 3.0, "stdlib": 0.5, "third_party": 2.0}


def _raw(procs: tuple[str, ...], p50: float, rps: float) -> dict[str, Any]:
    """One round of samples for a target, in the shape tests.bench.run records them."""
    rss = {p: 60.0 for p in procs}
    throughput = {
        "rps": rps,
        "requests": int(rps * 10),
        "errors": 0,
        "socket_errors": 0,
        "cpu_s": {p: 1.0 for p in procs},
        "rss_mb": rss,
    }
    return {
        "pids": {p: 1 for p in procs},
        "latency_c1": [{"p50_ms": p50, "p99_ms": p50 * 2}],
        "throughput": [throughput],
        "streams": {"stream20": [], "stream64x20": []},
        "rss_idle": rss,
        "rss_series": [rss, rss],
    }


def test_report_renders_the_issue17_sections_from_raw_samples() -> None:
    raw = {
        "direct": _raw(("upstream",), 0.05, 50000.0),
        "floor2": _raw(("hop1", "hop2"), 1.5, 2000.0),
        "interlock": _raw(("edge", "core", "redis"), 2.0, 1500.0),
        "interlock-full": _raw(("edge", "core", "redis"), 2.2, 1400.0),
    }
    summary = report.summarize(raw)
    assert summary["interlock"]["added_p50_ms"] == 1.95
    cold = {"import_ms": 300.0, "deps_import_ms": 250.0, "ratio": 1.2, "deps": ["aiohttp"]}
    cold |= {"top_edge": [], "top_deps": [], "zip_bytes": 12_000_000}
    result = {
        "started": "2026-12-02T12:00:00+00:00",
        "command": "python -m tests.bench.run --compare",
        "machine": {
            "nproc": 2,
            "cpu_model": "x",
            "kernel": "k",
            "python": "3.11",
            "packages": {},
            "loadavg_start": (0.1, 0.1, 0.1),
        },
        "versions": {"wrk": "4.1.0"},
        "settings": {"concurrency": 50},
        "summary": summary,
        "targets": report.check_targets(summary, None),
        "noise": {**verdicts.noise_check(summary), "attempts": 1},
        "targets17": verdicts.check(summary, cold),
        "ratios": verdicts.ratios(summary),
        "features": [{"step": "bare", "cpu_ms_per_req": 0.5, "p50_ms": 1.0}],
        "cold_start": cold,
    }
    text, markdown = report.render_text(result), report.render_markdown(result)
    assert (
        "RSS interlock-full:core" in text
        and "[ PASS] throughput, interlock / two-hop floor" not in text
    )
    assert "| added p50 c=1, interlock / two-hop floor | 1.345 | <= 1.3 | FAIL |" in markdown
    assert "## Cost of each feature" in markdown and "## Edge cold start" in markdown
    assert "zip 12.00 MB" in markdown
