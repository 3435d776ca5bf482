"""The issue-17 parts of the report: noise check, ratio targets, every ratio, the feature
ladder and the edge's cold start, as terminal lines and as Markdown (tests.bench.report
appends them to its table)."""

from __future__ import annotations

from typing import Any


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _noise_line(noise: dict[str, Any]) -> str:
    state = {
        True: "ok",
        False: "OUT OF BAND: the machine was too noisy to judge",
        None: "not measured",
    }
    return (
        f"noise check: two-hop floor p50 / direct p50 = {_f(noise.get('floor_over_direct_p50'))} "
        f"(band {noise['band'][0]}-{noise['band'][1]}): {state[noise.get('ok')]}"
        f" after {noise.get('attempts', 1)} attempt(s)"
    )


def _cold_lines(cold: dict[str, Any]) -> list[str]:
    size = cold.get("zip_bytes")
    lines = [
        f"edge cold start: import {cold['import_ms']} ms, its third-party dependencies alone "
        f"{cold['deps_import_ms']} ms ({', '.join(cold['deps'])}), ratio {_f(cold['ratio'])}; "
        f"zip {_f(size / 1e6, 2) + ' MB' if size else 'not built: ' + str(cold.get('error'))}",
        "  edge import self time by group (ms): "
        + ", ".join(f"{k} {v}" for k, v in cold.get("edge_self_ms_by_group", {}).items()),
        "  heaviest (self ms) edge: "
        + ", ".join(f"{e['module']} {e['self_ms']}" for e in cold["top_edge"][:6]),
        "  heaviest (self ms) deps alone: "
        + ", ".join(f"{e['module']} {e['self_ms']}" for e in cold["top_deps"][:6]),
    ]
    return lines


def text(result: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if result.get("noise"):
        lines += ["", _noise_line(result["noise"])]
    for item in result.get("targets17", []):
        lines.append(
            f"[{item['verdict']:>5}] {item['target']}: {_f(item['value'])} ({item['limit']})"
        )
    if result.get("ratios"):
        lines += ["", "ratios (interlock over each reference; <1 is less for latency/CPU):"]
        lines += [f"  {k}: {_f(v)}" for k, v in result["ratios"].items()]
    if result.get("features"):
        lines += ["", "feature ladder (each step adds one feature to the one above it):"]
        for row in result["features"]:
            lines.append(
                f"  {row['step']:<14} CPU/req {_f(row['cpu_ms_per_req'])} ms, p50 "
                f"{_f(row['p50_ms'])} ms; added vs {row.get('vs', '-')}: CPU "
                f"{_f(row.get('added_cpu_ms'))} ms, p50 {_f(row.get('added_p50_ms'))} ms"
            )
    if result.get("cold_start"):
        lines += ["", *_cold_lines(result["cold_start"])]
    return lines


def markdown(result: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if result.get("targets17"):
        out += ["", "## Issue 17 targets (ratios in this run)", ""]
        if result.get("noise"):
            out += [_noise_line(result["noise"]), ""]
        out += ["| target | value | limit | verdict |", "|---|---:|---|---|"]
        out += [
            f"| {c['target']} | {_f(c['value'])} | {c['limit']} | {c['verdict']} |"
            for c in result["targets17"]
        ]
    if result.get("ratios"):
        out += ["", "## Ratios", "", "| ratio | value |", "|---|---:|"]
        out += [f"| {k} | {_f(v)} |" for k, v in result["ratios"].items()]
    if result.get("features"):
        out += [
            "",
            "## Cost of each feature (ladder of stacks, interleaved)",
            "",
            "| step | CPU/req (ms) | p50 c=1 (ms) | vs | added CPU/req (ms) | added p50 (ms) |",
            "|---|---:|---:|---|---:|---:|",
        ]
        out += [
            f"| {r['step']} | {_f(r['cpu_ms_per_req'])} | {_f(r['p50_ms'])} | {r.get('vs', '-')} "
            f"| {_f(r.get('added_cpu_ms'))} | {_f(r.get('added_p50_ms'))} |"
            for r in result["features"]
        ]
    if result.get("cold_start"):
        out += ["", "## Edge cold start", ""] + [
            f"- {line.strip()}" for line in _cold_lines(result["cold_start"])
        ]
    return out
