"""Turns raw samples into the summary, the issue-3 target verdicts, a terminal table and files.

Medians across interleaved rounds damp a noisy machine; added latency is taken per round
(interlock minus direct measured minutes apart) before the median, for the same reason.
A failed target is a finding, not an error: it never changes the exit code.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import orjson

from tests.bench import report_extra

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_NAMES = ("direct", "floor1", "floor2", "interlock", "interlock-full", "portkey", "litellm")
STREAM_MODELS = ("stream20", "stream64x20")
GATEWAY_PROCS = {
    "direct": ("upstream",),
    "floor1": ("hop",),
    "floor2": ("hop1", "hop2"),
    "interlock": ("edge", "core"),
    "interlock-full": ("edge", "core"),
    "portkey": ("portkey",),
    "litellm": ("litellm",),
}
LEAK_TOLERANCE_MB = 2.0  # RSS growth across repeated runs still called "no growth"
LIMITS = {
    "added_p50_ms": 1.2,
    "added_p99_ms": 2.5,
    "rps": 1500.0,
    "cpu_ms_per_req": 0.8,
    "rss_mb": 120.0,
}


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks; None for no data."""
    if not values:
        return None
    data = sorted(values)
    pos = (len(data) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _streams_summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("sequential", "concurrent"):
        ttft = [s["ttft_ms"] for r in rounds for s in r[kind]["samples"]]
        total = [s["total_ms"] for r in rounds for s in r[kind]["samples"]]
        out[kind] = {
            "n": len(ttft),
            "errors": sum(len(r[kind]["errors"]) for r in rounds),
            "ttft_p50_ms": _r(percentile(ttft, 50)),
            "ttft_p99_ms": _r(percentile(ttft, 99)),
            "total_p50_ms": _r(percentile(total, 50)),
            "total_p99_ms": _r(percentile(total, 99)),
        }
    return out


def _probe_summary(mine: list[dict[str, Any]], direct: list[dict[str, Any]]) -> dict[str, Any]:
    """tests.bench.probe's rounds: medians, and what the target adds over direct (per-round
    differences, median): the same client for plain calls and streams."""
    out: dict[str, Any] = {}
    for key in ("plain_p50_ms", "ttft_p50_ms"):
        out[key] = _r(_median([r[key] for r in mine]))
        pairs = list(zip(mine, direct, strict=False)) if mine is not direct else []
        out["added_" + key] = _r(_median([a[key] - b[key] for a, b in pairs]))
    return out


def summarize(raw: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    direct = raw.get("direct")
    for name, data in raw.items():
        lat = data["latency_c1"]
        tput = data["throughput"]
        s: dict[str, Any] = {
            "p50_ms": _r(_median([x["p50_ms"] for x in lat])),
            "p99_ms": _r(_median([x["p99_ms"] for x in lat])),
            "rps": _r(_median([x["rps"] for x in tput]), 1),
            "rps_runs": [x["rps"] for x in tput],
            "error_rate": _r(
                sum(x["errors"] for x in tput)
                / max(1, sum(x["requests"] + x["socket_errors"] for x in tput)),
                5,
            ),
        }
        if direct is not None and name != "direct":
            pairs = list(zip(lat, direct["latency_c1"], strict=False))
            s["added_p50_ms"] = _r(_median([a["p50_ms"] - b["p50_ms"] for a, b in pairs]))
            s["added_p99_ms"] = _r(_median([a["p99_ms"] - b["p99_ms"] for a, b in pairs]))
        gateway = GATEWAY_PROCS[name]
        s["cpu_ms_per_req"] = _r(
            _median([sum(x["cpu_s"][p] for p in gateway) * 1000 / x["requests"] for x in tput])
        )
        s["cpu_ms_per_req_all"] = _r(
            _median([sum(x["cpu_s"].values()) * 1000 / x["requests"] for x in tput])
        )
        s["cpu_ms_per_req_by_process"] = {
            p: _r(_median([x["cpu_s"][p] * 1000 / x["requests"] for x in tput]))
            for p in data["pids"]
        }
        series = data["rss_series"]
        s["rss_mb"] = {
            p: {
                "idle": data["rss_idle"][p],
                "after_load": series[-1][p] if series else None,
                "growth": _r(series[-1][p] - series[0][p], 1) if len(series) > 1 else None,
            }
            for p in data["pids"]
        }
        s["streams"] = {model: _streams_summary(r) for model, r in data["streams"].items()}
        s["probe"] = _probe_summary(data.get("probe") or [], (direct or {}).get("probe") or [])
        summary[name] = s
    return summary


def _verdict(value: float | None, limit: float, ok: bool | None = None) -> str:
    if value is None:
        return "N/A"
    return "PASS" if (ok if ok is not None else value <= limit) else "FAIL"


def check_targets(
    summary: dict[str, Any], edge_import: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """The issue-3 targets, each PASS / FAIL / N/A (not measured in this run) / NOISY (a
    negative added latency: the run was disturbed, measure again on a quiet machine)."""
    s = summary.get("interlock")
    if s is None:
        return []
    checks: list[dict[str, Any]] = []

    def add(name: str, value: Any, limit: str, verdict: str) -> None:
        checks.append({"target": name, "value": value, "limit": limit, "verdict": verdict})

    for key, label in (("added_p50_ms", "added p50 at c=1"), ("added_p99_ms", "added p99 at c=1")):
        value = s.get(key)
        verdict = _verdict(value, LIMITS[key])
        if value is not None and value < 0:  # direct slower than interlock: a disturbed run
            verdict = "NOISY"
        add(f"{label} (ms)", value, f"<= {LIMITS[key]}", verdict)
    rps, errors = s["rps"], s["error_rate"]
    add(
        "throughput c=50 (--concurrency), fast, <1% errors (req/s)",
        rps,
        f">= {LIMITS['rps']:.0f}",
        _verdict(rps, 0, rps is not None and rps >= LIMITS["rps"] and errors < 0.01),
    )
    cpu = s["cpu_ms_per_req"]
    add(
        "CPU per request edge+core (ms)",
        cpu,
        f"<= {LIMITS['cpu_ms_per_req']}",
        _verdict(cpu, LIMITS["cpu_ms_per_req"]),
    )
    for proc in ("edge", "core"):
        rss = s["rss_mb"][proc]
        after, growth = rss["after_load"], rss["growth"]
        add(
            f"RSS {proc} after load (MB)",
            after,
            f"<= {LIMITS['rss_mb']:.0f}",
            _verdict(after, LIMITS["rss_mb"]),
        )
        add(
            f"RSS {proc} growth over repeated runs (MB)",
            growth,
            f"<= {LEAK_TOLERANCE_MB} (no growth)",
            _verdict(growth, LEAK_TOLERANCE_MB),
        )
    value = edge_import["import_ms"] if edge_import else None
    add("edge import time (ms)", value, "reported", "PASS" if value is not None else "N/A")
    return checks


def compare(summary: dict[str, Any]) -> dict[str, float | None]:
    """interlock / LiteLLM ratios (lower is better for latency and CPU, higher for req/s)."""
    a, b = summary.get("interlock"), summary.get("litellm")
    if a is None or b is None:
        return {}

    def ratio(key: str) -> float | None:
        x, y = a.get(key), b.get(key)
        return None if x is None or not y else round(x / y, 3)

    return {
        "throughput_ratio": ratio("rps"),
        "added_p50_ratio": ratio("added_p50_ms"),
        "added_p99_ratio": ratio("added_p99_ms"),
        "cpu_per_request_ratio": ratio("cpu_ms_per_req"),
    }


# --- output ---------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _pair(a: Any, b: Any, digits: int = 2) -> str:
    return f"{fmt(a, digits)} / {fmt(b, digits)}"


def _column(s: dict[str, Any], procs: list[str], name: str) -> list[str]:
    """One target's cells, in the order of `row_labels`."""
    added = (s.get("added_p50_ms"), s.get("added_p99_ms"))
    cells = [
        fmt(s["p50_ms"], 3),
        fmt(s["p99_ms"], 3),
        fmt(added[0], 3),
        fmt(added[1], 3),
        fmt(s["rps"], 0),
        fmt(s["error_rate"] * 100, 2),
        fmt(s["cpu_ms_per_req"], 3),
        fmt(s["cpu_ms_per_req_all"], 3),
    ]
    for model in STREAM_MODELS:
        for kind in ("sequential", "concurrent"):
            st = s["streams"].get(model, {}).get(kind, {})
            cells.append(_pair(st.get("ttft_p50_ms"), st.get("ttft_p99_ms")))
            cells.append(_pair(st.get("total_p50_ms"), st.get("total_p99_ms"), 1))
    probe = s.get("probe") or {}
    cells.append(_pair(probe.get("plain_p50_ms"), probe.get("ttft_p50_ms"), 3))
    cells.append(
        str(
            sum(
                s["streams"][m][k]["errors"]
                for m in s["streams"]
                for k in ("sequential", "concurrent")
            )
        )
    )
    for proc in procs:
        owner, _, own = proc.partition(":")
        rss = s["rss_mb"].get(own) if owner == name else None
        cells.append(
            "-"
            if rss is None
            else f"{_pair(rss['idle'], rss['after_load'], 1)} / {fmt(rss['growth'], 1)}"
        )
    return cells


def row_labels(procs: list[str], concurrency: int) -> list[str]:
    labels = [
        "p50 latency c=1 (ms)",
        "p99 latency c=1 (ms)",
        "added p50 vs direct (ms)",
        "added p99 vs direct (ms)",
        f"throughput c={concurrency} (req/s)",
        f"errors c={concurrency} (%)",
        "CPU/req gateway procs (ms)",
        "CPU/req all stack procs (ms)",
    ]
    for model in STREAM_MODELS:
        for short in ("seq", "conc"):
            labels.append(f"{model} {short} TTFT p50/p99 (ms)")
            labels.append(f"{model} {short} total p50/p99 (ms)")
    labels.append("one client c=1: plain p50 / stream20 TTFT p50 (ms)")
    labels.append("stream errors (all streams)")
    labels += [f"RSS {proc} idle/load/growth (MB)" for proc in procs]
    return labels


def table_rows(summary: dict[str, Any], concurrency: int) -> list[tuple[str, list[str]]]:
    names = [n for n in TARGET_NAMES if n in summary]
    procs = [f"{n}:{p}" for n in names for p in summary[n]["rss_mb"]]
    columns = [_column(summary[n], procs, n) for n in names]
    return [
        (label, [c[i] for c in columns]) for i, label in enumerate(row_labels(procs, concurrency))
    ]


def render_text(result: dict[str, Any]) -> str:
    summary = result["summary"]
    names = [n for n in TARGET_NAMES if n in summary]
    rows = table_rows(summary, result["settings"]["concurrency"])
    width = max(len(label) for label, _ in rows)
    col = max([12, *(len(c) for _, cells in rows for c in cells)])
    lines = [f"{'':<{width}}  " + "  ".join(f"{n:>{col}}" for n in names)]
    lines += [
        f"{label:<{width}}  " + "  ".join(f"{c:>{col}}" for c in cells) for label, cells in rows
    ]
    lines.append("")
    if result.get("edge_import"):
        imp = result["edge_import"]
        lines.append(
            f"edge import (fresh interpreter, median of {imp['runs']}): {imp['import_ms']} ms "
            f"(whole interpreter {imp['interpreter_total_ms']} ms)"
        )
    for check in result["targets"]:
        lines.append(
            f"[{check['verdict']:>5}] {check['target']}: {fmt(check['value'], 3)} "
            f"(target {check['limit']})"
        )
    for key, value in result.get("compare", {}).items():
        lines.append(f"interlock/LiteLLM {key}: {fmt(value, 3)}")
    lines += report_extra.text(result)
    return "\n".join(lines)


def _load(values: Any) -> str:
    return "-" if not values else "/".join(f"{v:.2f}" for v in values)


def render_markdown(result: dict[str, Any]) -> str:
    summary = result["summary"]
    names = [n for n in TARGET_NAMES if n in summary]
    m = result["machine"]
    out = [
        f"# interlock benchmark {result['started']}",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), kernel {m['kernel']}, "
        f"Python {m['python']}, load average {_load(m['loadavg_start'])} at start, "
        f"{_load(m.get('loadavg_end'))} at end",
        "",
        "Packages: "
        + ", ".join(f"{k} {v}" for k, v in m["packages"].items())
        + "; "
        + ", ".join(f"{k} {v}" for k, v in result["versions"].items() if v),
        "",
        "Settings: " + ", ".join(f"{k}={v}" for k, v in result["settings"].items()),
        "",
        "| metric | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    out += [
        f"| {label} | " + " | ".join(cells) + " |"
        for label, cells in table_rows(summary, result["settings"]["concurrency"])
    ]
    out += [
        "",
        "## Issue 3 targets",
        "",
        "| target | value | limit | verdict |",
        "|---|---:|---|---|",
    ]
    out += [
        f"| {c['target']} | {fmt(c['value'], 3)} | {c['limit']} | {c['verdict']} |"
        for c in result["targets"]
    ]
    if result.get("edge_import"):
        imp = result["edge_import"]
        out += [
            "",
            f"Edge import: {imp['import_ms']} ms (fresh interpreter {imp['interpreter_total_ms']}"
            " ms). Heaviest packages (ms, self time): "
            + ", ".join(f"{k} {v}" for k, v in imp["heaviest_top_level_imports_ms"].items()),
        ]
    if result.get("compare"):
        out += ["", "## interlock / LiteLLM", ""]
        out += [f"- {k}: {fmt(v, 3)}" for k, v in result["compare"].items()]
    out += report_extra.markdown(result)
    if result.get("notes"):
        out += ["", "## Notes", ""] + [f"- {n}" for n in result["notes"]]
    return "\n".join(out) + "\n"


def write_files(result: dict[str, Any]) -> tuple[Path, Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = result["started"].replace(":", "").replace("-", "")[:15]
    data = orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    markdown = render_markdown(result)
    json_path, md_path = RESULTS / f"bench-{stamp}.json", RESULTS / f"bench-{stamp}.md"
    json_path.write_bytes(data)
    md_path.write_text(markdown)
    (RESULTS / "latest.json").write_bytes(data)
    (RESULTS / "latest.md").write_text(markdown)
    return json_path, md_path
