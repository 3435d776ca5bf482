"""The edge's cold start: its import time against its third-party dependencies' alone, and
the Lambda zip's size.

A cold Lambda pays for importing edge.main (which builds the app from the config). Part of that
is the dependencies' own import (Starlette, aiohttp, PyJWT ...), which our code cannot shrink;
the rest is ours. To split them, `python -X importtime -c "import edge.main"` lists every module
the edge imports; a fresh interpreter then imports exactly the third-party ones among them (by
full dotted name: what the edge pulls in, no more), timed the same way. The issue-17 target is
edge / dependencies <= 1.5. The zip is built with infra/lambda/package.py --reuse-installed
(this environment's packages: the size of the code, not of arm64 wheels; no index access).

Both sides run from bytecode, as a cold Lambda does (package.py precompiles the zip): with
PYTHONDONTWRITEBYTECODE set (this workplace sets it) every fresh interpreter would compile our
sources while the dependencies load the .pyc pip wrote, and the ratio would partly measure
CPython's compiler (1.46 with it, 1.20 without, same machine). `stack.bytecode_env` gives the
measuring interpreters a private bytecode cache, filled by a warm-up import of each side.

`without` projects the ratio with a package (aiohttp, which the edge is dropping for its own
client) no longer counted: everything first imported inside that package's import leaves the
dependencies' side, and our own cost (edge import minus dependencies) is kept. The standard
library modules that package imported and our code would then import itself stay on the
dependencies' side, so the projection flatters us a little.

Alone: `python -m tests.bench.coldstart [runs]` prints the figures as JSON (no zip).
"""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.bench.stack import ROOT, HarnessError, bytecode_env, fresh_python, import_ms

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


def imported_within(stderr: str, package: str) -> set[str]:
    """Every module first imported while `package` (a root name) was being imported, itself
    included: what leaves with it. `-X importtime` lists a module after the ones its import
    pulled in, indented one level deeper, so reading backwards each module's importer comes
    first."""
    inside: set[str] = set()
    stack: list[tuple[int, bool]] = []  # (depth, within the package) of the open importers
    for line in reversed(stderr.splitlines()):
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue
        name = parts[2].strip()
        depth = len(parts[2]) - len(parts[2].lstrip())
        while stack and stack[-1][0] >= depth:
            stack.pop()
        within = name.split(".")[0] == package or (bool(stack) and stack[-1][1])
        stack.append((depth, within))
        if within:
            inside.add(name)
    return inside


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


def _timed(codes: list[str], env: dict[str, str], runs: int) -> list[float]:
    """Medians of fresh-interpreter imports, taken in turn so drift hits all alike."""
    samples: list[list[float]] = [[] for _ in codes]
    for _ in range(runs):
        for code, taken in zip(codes, samples, strict=True):
            taken.append(import_ms(code, env))
    return [round(statistics.median(taken), 1) for taken in samples]


def _raw_trace(code_import: str, env: dict[str, str]) -> str:
    out = fresh_python(["-X", "importtime", "-c", code_import], env)
    if out.returncode != 0:
        raise HarnessError(f"`{code_import}` failed under -X importtime:\n{out.stderr[-2000:]}")
    return out.stderr


def _trace(code_import: str, env: dict[str, str]) -> list[tuple[str, int, int]]:
    return parse_importtime(_raw_trace(code_import, env))


def _import_all(names: list[str]) -> str:
    """Imports each name, skipping those that fail inside a try (optional speedups that are
    not installed: the trace lists the attempt). __import__, not importlib.import_module:
    only the former shows in -X importtime."""
    return f"for name in {names!r}:\n    try: __import__(name)\n    except ImportError: pass"


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


def measure(
    env: dict[str, str], runs: int, without: str = "aiohttp", zipped: bool = True
) -> dict[str, Any]:
    """Edge import, dependencies-only import (both medians of fresh interpreters running
    from bytecode), the ratio, the same with `without` no longer counted, the heaviest
    modules of each, and the zip's size (unless `zipped` is False)."""
    with bytecode_env(env) as env_pyc:
        result = _measure(env_pyc, runs, without)
    return {**result, **(zip_size() if zipped else {})}


def _measure(env: dict[str, str], runs: int, without: str) -> dict[str, Any]:
    _raw_trace("import edge.main", env)  # warm-up: compiles the edge's and its deps' bytecode
    startup = frozenset(m for m, _, _ in _trace("pass", env))
    # What a bare interpreter imports anyway (encodings, site ...) is in neither side's cost.
    edge_trace = _raw_trace("import edge.main", env)
    edge_rows = [r for r in parse_importtime(edge_trace) if r[0] not in startup]
    deps = third_party([m for m, _, _ in edge_rows], frozenset(sys.stdlib_module_names), startup)
    if not deps:
        raise HarnessError("importtime listed no third-party module for the edge")
    gone = imported_within(edge_trace, without)
    deps_import = _import_all(deps)
    _raw_trace(deps_import, env)  # warm-up (the same bytecode; the rest of the deps' files)
    rest_import = _import_all([m for m in deps if m not in gone])
    edge_ms, deps_ms, rest_ms = _timed(["import edge.main", deps_import, rest_import], env, runs)
    ours_ms = edge_ms - deps_ms
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
        "without": {
            "package": without,
            "in_trace": bool(gone),
            "deps_import_ms": rest_ms,
            "ratio": round((ours_ms + rest_ms) / rest_ms, 3) if rest_ms else None,
        },
        "runs": runs,
        "deps": dep_roots,
        "deps_modules": len(deps),
        "edge_self_ms_by_group": by_group(edge_rows, stdlib),
        "top_edge": top_entries(edge_rows),
        "top_deps": top_entries(deps_rows),
        "bytecode": "both sides from a warmed private cache (stack.bytecode_env)",
    }


if __name__ == "__main__":
    import json
    import os

    environ = {**os.environ, "PYTHONPATH": str(ROOT)}
    print(json.dumps(measure(environ, int(sys.argv[1]) if sys.argv[1:] else 7, zipped=False)))
