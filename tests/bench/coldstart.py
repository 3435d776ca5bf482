"""The edge's cold start: its import time against its third-party dependencies' alone, and
the Lambda zip's size.

A cold Lambda pays for importing edge.main (which builds the app from the config). Part of that
is the dependencies' own import (Starlette, aiohttp, PyJWT ...), which our code cannot shrink;
the rest is ours. To split them, `python -X importtime -c "import edge.main"` lists every module
the edge imports; a fresh interpreter then imports exactly the third-party ones among them (by
full dotted name: what the edge pulls in, no more), timed the same way. The issue-17 target is
edge / dependencies <= 1.5. The zip is built with infra/lambda/package.py --reuse-installed
(this environment's packages: the size of the code, not of arm64 wheels; no index access).
"""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.bench.stack import ROOT, HarnessError, fresh_python, import_ms

OURS = frozenset(("edge", "shared", "core", "tests", "infra"))


def parse_importtime(stderr: str) -> list[tuple[str, int, int]]:
    """(module, self µs, cumulative µs) for each line of `-X importtime` output."""
    rows = []
    for line in stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue
        rows.append((parts[2].strip(), int(parts[0]), int(parts[1])))
    return rows


def third_party(
    modules: list[str], stdlib: frozenset[str], startup: frozenset[str] = frozenset()
) -> list[str]:
    """The modules whose root package is neither the standard library nor ours, in order;
    `startup` (what a bare interpreter imports: site hooks, editable-install finders) and
    names that are not importable identifiers are left out."""
    seen: dict[str, None] = {}
    for name in modules:
        root = name.split(".")[0]
        if name in startup or not all(part.isidentifier() for part in name.split(".")):
            continue
        if root not in stdlib and root not in OURS:
            seen.setdefault(name, None)
    return list(seen)


def top_entries(rows: list[tuple[str, int, int]], top: int = 10) -> list[dict[str, Any]]:
    """The heaviest modules by self time: where an import's time goes."""
    ranked = sorted(rows, key=lambda r: -r[1])[:top]
    return [
        {"module": m, "self_ms": round(s / 1000, 2), "cum_ms": round(c / 1000, 2)}
        for m, s, c in ranked
    ]


def by_group(rows: list[tuple[str, int, int]], stdlib: frozenset[str]) -> dict[str, float]:
    """Self time (ms) of our packages, the standard library and third-party code: what
    dominates the import, without counting a module twice."""
    groups = {"ours": 0.0, "stdlib": 0.0, "third_party": 0.0}
    for name, self_us, _ in rows:
        root = name.split(".")[0]
        key = "ours" if root in OURS else "stdlib" if root in stdlib else "third_party"
        groups[key] += self_us / 1000
    return {k: round(v, 1) for k, v in groups.items()}


def _timed_pair(first: str, second: str, env: dict[str, str], runs: int) -> tuple[float, float]:
    """Medians of fresh-interpreter imports, the two alternating so drift hits both alike."""
    a, b = [], []
    for _ in range(runs):
        a.append(import_ms(first, env))
        b.append(import_ms(second, env))
    return round(statistics.median(a), 1), round(statistics.median(b), 1)


def _trace(code_import: str, env: dict[str, str]) -> list[tuple[str, int, int]]:
    out = fresh_python(["-X", "importtime", "-c", code_import], env)
    if out.returncode != 0:
        raise HarnessError(f"`{code_import}` failed under -X importtime:\n{out.stderr[-2000:]}")
    return parse_importtime(out.stderr)


def zip_size() -> dict[str, Any]:
    """Builds the edge zip into a temp dir (this environment's packages) and sizes it."""
    with tempfile.TemporaryDirectory(prefix="edge-zip-") as tmp:
        out = Path(tmp) / "edge.zip"
        argv = [sys.executable, str(ROOT / "infra/lambda/package.py"), "--reuse-installed"]
        result = subprocess.run(
            [*argv, "--out", str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if result.returncode != 0 or not out.exists():
            return {"zip_bytes": None, "error": (result.stderr or result.stdout)[-500:]}
        return {"zip_bytes": out.stat().st_size, "how": "package.py --reuse-installed"}


def measure(env: dict[str, str], runs: int) -> dict[str, Any]:
    """Edge import, dependencies-only import (both medians of fresh interpreters), the ratio,
    the heaviest modules of each, and the zip's size."""
    startup = frozenset(m for m, _, _ in _trace("pass", env))
    # What a bare interpreter imports anyway (encodings, site ...) is in neither side's cost.
    edge_rows = [r for r in _trace("import edge.main", env) if r[0] not in startup]
    deps = third_party([m for m, _, _ in edge_rows], frozenset(sys.stdlib_module_names), startup)
    if not deps:
        raise HarnessError("importtime listed no third-party module for the edge")
    # Some names in the trace were attempts that failed inside a try (optional speedups that
    # are not installed): skipped here as they were there.
    # (__import__, not importlib.import_module: only the former shows in -X importtime.)
    deps_import = f"for name in {deps!r}:\n    try: __import__(name)\n    except ImportError: pass"
    edge_ms, deps_ms = _timed_pair("import edge.main", deps_import, env, runs)
    deps_rows = [r for r in _trace(deps_import, env) if r[0] not in startup]
    stdlib = frozenset(sys.stdlib_module_names)
    found = third_party([r[0] for r in deps_rows], stdlib, startup)
    dep_roots = sorted(
        {m.split(".")[0] for m in found if importlib.util.find_spec(m.split(".")[0])}
    )
    return {
        "import_ms": edge_ms,
        "deps_import_ms": deps_ms,
        "ratio": round(edge_ms / deps_ms, 3) if deps_ms else None,
        "runs": runs,
        "deps": dep_roots,
        "deps_modules": len(deps),
        "edge_self_ms_by_group": by_group(edge_rows, stdlib),
        "top_edge": top_entries(edge_rows),
        "top_deps": top_entries(deps_rows),
        **zip_size(),
    }
