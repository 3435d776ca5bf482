"""The processes under test, started the way a user deploys them, and always stopped again.

Every child gets its own session (so its whole group can be killed) and a parent-death signal
(so nothing outlives a harness killed with SIGKILL). Output goes to log files, never to a pipe
that could fill and stall a server mid-benchmark.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis
import yaml

from core.ops.keys import init_keys, issue_token
from shared.config import load_config
from tests.support.net import free_port, wait_http, wait_port

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("fast", "slow50", "stream20", "stream64x20")  # the fake upstream's modes
UPSTREAM_KEY = "sk-bench-upstream"
TIER = "bench"  # the tenant token's tier; rate limits hang off it
_PR_SET_PDEATHSIG = 1


def _child_setup() -> None:  # pragma: no cover - runs in the forked child
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class HarnessError(RuntimeError):
    """The harness itself is broken (a process did not start, a check failed): exit non-zero."""


class Processes:
    """Every child the harness started; `stop_all` runs on normal exit, errors and Ctrl-C."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.cleanups: list[Callable[[], None]] = []  # servers with their own stop (PostgreSQL)

    def spawn(
        self, name: str, argv: list[str], env: dict[str, str], cwd: Path = ROOT
    ) -> subprocess.Popen[bytes]:
        log = self.workdir / f"{name}.log"
        with log.open("ab") as handle:
            process = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                preexec_fn=_child_setup,  # safe: no threads run at spawn time
            )
        self.children.append((name, process))
        return process

    def log_tail(self, name: str, lines: int = 30) -> str:
        log = self.workdir / f"{name}.log"
        if not log.exists():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    def check_alive(self) -> None:
        for name, process in self.children:
            if process.poll() is not None:
                raise HarnessError(
                    f"{name} exited with code {process.returncode}:\n{self.log_tail(name)}"
                )

    def stop_all(self) -> None:
        """Newest first, one at a time: gateways drain before the upstream and Redis go away."""
        while self.children:
            _, process = self.children.pop()
            _signal_group(process, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
            _signal_group(process, signal.SIGKILL)  # stragglers in the group, e.g. forked workers
            process.wait()
        while self.cleanups:
            with contextlib.suppress(Exception):  # one failed stop must not leak the others
                self.cleanups.pop()()


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def start_redis(procs: Processes) -> tuple[str, int]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise HarnessError("redis-server is not installed (apt-get install -y redis-server)")
    port = free_port()
    data = procs.workdir / "redis"
    data.mkdir(exist_ok=True)
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    argv += ["no", "--dir", str(data)]
    process = procs.spawn("redis", argv, dict(os.environ))
    wait_port(port)
    return f"redis://127.0.0.1:{port}/0", process.pid


def redis_commands(url: str) -> dict[str, int]:
    """Calls per Redis command so far: proves, and prices, the hot path's trips to Redis."""
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def start_upstream(procs: Processes) -> tuple[str, int]:
    """The fast fake provider; returns its base URL (without /v1) and pid."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "tests.bench.upstream", "--port", str(port)]
    process = procs.spawn("upstream", argv, env)
    url = f"http://127.0.0.1:{port}"
    wait_ready(procs, "upstream", f"{url}/healthz", process)
    return url, process.pid


def wait_ready(procs: Processes, name: str, url: str, process: subprocess.Popen[bytes]) -> None:
    try:
        wait_http(url, timeout=120, process=process)
    except (TimeoutError, RuntimeError) as exc:
        raise HarnessError(
            f"{name} did not become ready ({exc}):\n{procs.log_tail(name)}"
        ) from None


# --- interlock ------------------------------------------------------------------------------


def bench_config(
    upstream_url: str, state_dir: Path, core_port: int, edge_port: int, admin_port: int
) -> dict[str, Any]:
    """THE place to switch hot-path features on: the benchmark must pay for everything a user
    would run. Today: real JWT verification (ES256, models claim checked), HMAC hop credential,
    usage accounting at INFO (env below), tenant rate limits in Redis (limits far above what
    the bench can reach: it measures the cost of the check, never a rejection), the ledger
    (SQLite, the default), prices for the bench models, one budget that applies to every
    request (never reached), and ten routing rules that every request evaluates and none
    matches (issue 12's "ten rules" figure). Add caching in bypass mode, telemetry ... here as
    they land, so `make bench` keeps measuring the full hot path.
    """
    return {
        "state_dir": str(state_dir),
        "auth": {
            "issuer": "interlock-bench",
            "audience": "interlock-bench",
            "algorithm": "ES256",
            "max_ttl": "2h",
        },
        "edge": {
            "port": edge_port,
            "pools": {"default": [f"http://127.0.0.1:{core_port}"]},
            # The load generator stands for many clients behind one address (as a load
            # balancer does); every other server limit stays at its default.
            "server": {"max_connections_per_client": 0},
        },
        "core": {"port": core_port, "admin_port": admin_port},
        "providers": {
            "bench": {
                "kind": "openai",
                "base_url": f"{upstream_url}/v1",
                "api_key": UPSTREAM_KEY,
            }
        },
        "models": {name: {"provider": "bench", "model": name} for name in MODELS},
        "limits": {"tiers": {TIER: {"rpm": 10**11, "tpm": 10**12}}},
        "prices": {"models": {"bench/*": {"input": "0.15", "output": "0.60"}}},
        "budgets": {"bench-monthly": {"limit": "100000000", "period": "month"}},
        "routing": BENCH_ROUTING,
    }


# Ten rules of every kind of condition, none of which the bench's requests match: each
# request pays for evaluating all ten, then takes its model's own route.
BENCH_ROUTING: dict[str, Any] = {
    "headers": ["x-priority"],
    "rules": [
        {"id": "long", "when": {"prompt_tokens": {"gt": 100_000}}, "refuse": "too long"},
        {"id": "free", "when": {"tier": "free"}, "cap": {"max_tokens": 64}},
        {"id": "rt", "when": {"header.x-priority": "realtime"}, "latency_ceiling_ms": 200},
        {"id": "batch", "when": {"tags.kind": "batch"}, "refuse": "no batch"},
        {"id": "huge", "when": {"max_tokens": {"gt": 100_000}}, "cap": {"max_tokens": 4096}},
        {"id": "tools", "when": {"tools": True, "model": "slow50"}, "model": "fast"},
        {"id": "images", "when": {"images": True}, "model": "fast"},
        {"id": "claude", "when": {"model": {"glob": "claude-*"}}, "model": "fast"},
        {"id": "tenant", "when": {"tenant": {"in": ["blocked-a", "blocked-b"]}}, "refuse": "no"},
        {
            "id": "night",
            "when": {"all": [{"hour": {"lt": 0}}, {"stream": True}]},
            "refuse": "never",
        },
    ],
}


def bench_env(config_path: Path, redis_url: str) -> dict[str, str]:
    """Environment of both tiers; the hot-path env switches live here next to bench_config."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL"):
        env.pop(name, None)
    env.update(
        {
            "INTERLOCK_CONFIG": str(config_path),
            "INTERLOCK_HOP_SECRET": secrets.token_urlsafe(40),
            "INTERLOCK_LOG_LEVEL": "INFO",  # usage accounting: one line per request
            "REDIS_URL": redis_url,  # shared state: rate limits (and later caches)
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def server_argv(tier: str, port: int) -> list[str]:
    """As deployed: the launcher (connection limits, core admin listener from the config), one
    worker, uvloop + httptools, no access log."""
    return [
        sys.executable,
        "-m",
        "shared.server",
        tier,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
    ]


class Interlock:
    """edge + core as two server processes, with keys, a tenant token and a private Redis."""

    def __init__(self, procs: Processes, upstream_url: str, redis_url: str) -> None:
        self.procs = procs
        self.core_port = free_port()
        self.edge_port = free_port()
        self.admin_port = free_port()
        workdir = procs.workdir / "interlock"
        workdir.mkdir(exist_ok=True)
        raw = bench_config(
            upstream_url, workdir / "state", self.core_port, self.edge_port, self.admin_port
        )
        self.config_path = workdir / "interlock.yaml"
        self.config_path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        self.env = bench_env(self.config_path, redis_url)
        self.config = load_config(self.config_path, env=self.env)
        init_keys(self.config.auth)
        self.token = issue_token(
            self.config.auth, "bench-tenant", 7200, ["fast", "slow50", "stream*"], TIER
        )
        self.pids: dict[str, int] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.edge_port}"

    def start(self) -> None:
        core = self.procs.spawn("core", server_argv("core", self.core_port), self.env)
        edge = self.procs.spawn("edge", server_argv("edge", self.edge_port), self.env)
        wait_ready(self.procs, "core", f"http://127.0.0.1:{self.admin_port}/readyz", core)
        wait_ready(self.procs, "edge", f"{self.url}/healthz", edge)
        self.pids = {"edge": edge.pid, "core": core.pid}


def fresh_python(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter run with `args` from the repository root, its output captured."""
    return subprocess.run(
        [sys.executable, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def import_ms(code_import: str, env: dict[str, str]) -> float:
    """Milliseconds `code_import` (an import statement) takes in a fresh interpreter."""
    timed = f"import time\nt = time.perf_counter()\n{code_import}\n"
    out = fresh_python(["-c", timed + "print((time.perf_counter() - t) * 1000)"], env)
    if out.returncode != 0:
        raise HarnessError(f"timing `{code_import}` failed:\n{out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def bytecode_env(env: dict[str, str]) -> Iterator[dict[str, str]]:
    """`env` for fresh interpreters that run from bytecode, as a cold Lambda does (the zip is
    precompiled), whatever the caller's PYTHONDONTWRITEBYTECODE says: without bytecode every
    import of ours would be timed with CPython's compiler in it, while the dependencies load
    the .pyc pip wrote. A private cache (PYTHONPYCACHEPREFIX), filled by the first import,
    gone afterwards; callers warm it before timing."""
    with tempfile.TemporaryDirectory(prefix="bench-pyc-") as cache:
        out = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        yield {**out, "PYTHONPYCACHEPREFIX": cache}


def edge_import_ms(env: dict[str, str], runs: int = 5) -> dict[str, Any]:
    """Lambda cold-start proxy: a fresh interpreter importing edge.main (which builds the app
    from the config, as a cold Lambda does), from bytecode. Median of `runs`, plus the
    heaviest imports."""
    with bytecode_env(env) as env_pyc:
        import_ms("import edge.main", env_pyc)  # warm-up: writes the bytecode
        return _edge_import_ms(env_pyc, runs)


def _edge_import_ms(env: dict[str, str], runs: int) -> dict[str, Any]:
    samples, walls = [], []
    for _ in range(runs):
        started = time.perf_counter()
        samples.append(import_ms("import edge.main", env))
        walls.append((time.perf_counter() - started) * 1000)
    trace = fresh_python(["-X", "importtime", "-c", "import edge.main"], env)
    heaviest = _heaviest_imports(trace.stderr)
    samples.sort()
    walls.sort()
    return {
        "import_ms": round(samples[len(samples) // 2], 1),
        "interpreter_total_ms": round(walls[len(walls) // 2], 1),
        "runs": runs,
        "heaviest_top_level_imports_ms": heaviest,
    }


def _heaviest_imports(stderr: str, top: int = 8) -> dict[str, float]:
    """Import time by root package (sum of self times, so nothing counts twice), from
    `python -X importtime`: where the edge's cold start goes."""
    totals: dict[str, float] = {}
    for line in stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue  # the header line or foreign output
        root = parts[2].strip().split(".")[0]
        totals[root] = totals.get(root, 0.0) + int(parts[0]) / 1000
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:top]
    return {name: round(ms, 1) for name, ms in ranked}
