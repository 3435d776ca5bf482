"""Runs the real edge and core as subprocesses on free loopback ports, through the same
launcher as every deployment (`python -m shared.server`, with its connection limits).

Tests talk to them over real sockets, exactly as a tenant would; child logs go to files so tests
can also check what the gateway wrote about a request.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from core.ops.keys import init_keys, issue_token
from shared.config import Config, load_config
from tests.support.net import free_port, wait_http, wait_port

ROOT = Path(__file__).resolve().parents[2]


def base_config(state_dir: Path, core_port: int, edge_port: int) -> dict[str, Any]:
    return {
        "state_dir": str(state_dir),
        "auth": {
            "issuer": "interlock-test",
            "audience": "interlock-test",
            "max_ttl": "1h",
            "leeway": "5s",
        },
        "edge": {"port": edge_port, "pools": {"default": [f"http://127.0.0.1:{core_port}"]}},
        "core": {"port": core_port},
        "providers": {"mock": {"kind": "mock", "allow_any_model": True}},
        "models": {"mock-1": {"provider": "mock", "model": "mock-1"}},
    }


class Stack:
    def __init__(
        self,
        workdir: Path,
        overrides: dict[str, Any] | None = None,
        core_port: int | None = None,
        edge_port: int | None = None,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.core_port = core_port or free_port()
        self.edge_port = edge_port or free_port()
        self.core_admin_port = free_port()
        raw = base_config(workdir / "state", self.core_port, self.edge_port)
        raw["core"]["admin_port"] = self.core_admin_port
        for key, value in (overrides or {}).items():
            if isinstance(value, dict) and isinstance(raw.get(key), dict):
                raw[key] = {**raw[key], **value}
            else:
                raw[key] = value
        self.config_path = workdir / "interlock.yaml"
        self.config_path.write_text(yaml.safe_dump(raw), encoding="utf-8")
        self.env = {
            **os.environ,
            "INTERLOCK_CONFIG": str(self.config_path),
            "INTERLOCK_HOP_SECRET": secrets.token_urlsafe(40),
            "PYTHONPATH": str(ROOT),
        }
        self.config: Config = load_config(self.config_path, env=self.env)
        # core.server.tls_*: the core serves https on both listeners (edge pools say https).
        self.core_tls = self.config.core.server.tls_cert_file is not None
        init_keys(self.config.auth)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: dict[str, Path] = {}
        self.log_of: dict[int, Path] = {}  # pid -> its log
        self.event_loop: str | None = None  # --loop for every tier (default: uvloop if any)
        # Signals the tiers start with ignored, as under a parent that ignores them: uvicorn
        # then re-raises a drained SIGTERM in vain and the process exits the ordinary way.
        self.ignored_signals: tuple[signal.Signals, ...] = ()

    def _spawn(
        self,
        tier: str,
        port: int,
        name: str | None = None,
        admin_port: int | None = None,
        app: str | None = None,
        http: str | None = None,
    ) -> subprocess.Popen[bytes]:
        """One tier; a core also gets its admin listener (/readyz, /metrics) on `admin_port`
        (default: this stack's). `app` swaps the app factory (a test-only wrapper), `http`
        picks the HTTP implementation (h11, as in the Lambda zip, or httptools)."""
        log = self.workdir / f"{name or tier}.log"
        self.logs[name or tier] = log
        handle = log.open("ab")
        argv = [sys.executable, "-m", "shared.server", tier, "--host", "127.0.0.1"]
        argv += ["--port", str(port)]
        if tier == "core":
            argv += ["--admin-port", str(admin_port or self.core_admin_port)]
        if app is not None:
            argv += ["--app", app]
        if http is not None:
            argv += ["--http", http]
        if self.event_loop is not None:
            argv += ["--loop", self.event_loop]
        process = subprocess.Popen(
            argv,
            env=self.env,
            cwd=ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
            preexec_fn=self._ignore_signals if self.ignored_signals else None,
        )
        handle.close()
        self.processes.append(process)
        self.log_of[process.pid] = log
        return process

    def _ignore_signals(self) -> None:
        for sig in self.ignored_signals:
            signal.signal(sig, signal.SIG_IGN)

    def wait_exit(self, process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
        """The exit code of a tier that was told to stop. One still running after `timeout`
        is asked for every thread's stack (SIGUSR1, shared/server.py) and the test fails with
        its log: the drain's reports (shared/drain.py) and those stacks say where it hangs."""
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGUSR1)
            time.sleep(1.0)
            log = self.log_of[process.pid].read_text(errors="replace")
            raise AssertionError(
                f"{' '.join(map(str, process.args))} did not exit within {timeout} s; "
                f"its log:\n{log[-30000:]}"
            ) from None

    def start(self, core_app: str | None = None) -> Stack:
        """Both tiers; `core_app` (module:factory) runs a wrapped core app instead."""
        core = self._spawn("core", self.core_port, app=core_app)
        edge = self._spawn("edge", self.edge_port)
        try:
            if self.core_tls:
                wait_port(self.core_admin_port)  # uvicorn listens once its lifespan has started
            else:
                # Up once the lifespan has started; not /readyz, which also says whether shared
                # state is usable, and a test may start a core whose Redis is down.
                wait_http(f"{self.core_admin_url}/healthz", process=core)
            wait_http(f"{self.edge_url}/healthz", process=edge)
        except Exception as exc:
            self.stop()
            raise RuntimeError(self.read_logs()) from exc
        return self

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()

    @property
    def edge_url(self) -> str:
        return f"http://127.0.0.1:{self.edge_port}"

    @property
    def core_url(self) -> str:
        scheme = "https" if self.core_tls else "http"
        return f"{scheme}://127.0.0.1:{self.core_port}"

    @property
    def core_admin_url(self) -> str:
        """The core's admin listener: /readyz and /metrics are served only there."""
        return f"http://127.0.0.1:{self.core_admin_port}"

    def token(
        self,
        tenant: str = "acme",
        ttl: float = 600,
        models: list[str] | None = None,
        tier: str | None = None,
    ) -> str:
        return issue_token(self.config.auth, tenant, ttl, models, tier)

    def wait_for_log(self, *needles: str, timeout: float = 10.0) -> str:
        """The logs once a line containing every needle has been written (usage lines are
        flushed in batches, and a stream's as it ends): poll, never sleep blindly."""
        deadline = time.monotonic() + timeout
        while True:
            logs = self.read_logs()
            if any(all(n in line for n in needles) for line in logs.splitlines()):
                return logs
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line with {needles!r}")
            time.sleep(0.02)

    def read_logs(self) -> str:
        return "\n".join(
            path.read_text(errors="replace") for path in self.logs.values() if path.exists()
        )


class Cluster(Stack):
    """Several cores and edges sharing one config (and so one Redis): what a multi-replica
    deployment looks like. Every edge balances over every core."""

    def __init__(
        self, workdir: Path, overrides: dict[str, Any], cores: int = 2, edges: int = 2
    ) -> None:
        self.core_ports = [free_port() for _ in range(cores)]
        self.core_admin_ports = [free_port() for _ in range(cores)]
        self.edge_ports = [free_port() for _ in range(edges)]
        pools = {"default": [f"http://127.0.0.1:{port}" for port in self.core_ports]}
        merged = {**overrides, "edge": {**overrides.get("edge", {}), "pools": pools}}
        super().__init__(workdir, merged, self.core_ports[0], self.edge_ports[0])

    def start(self, core_app: str | None = None) -> Cluster:
        """Every tier; `core_app` (module:factory) runs a wrapped core app in each core."""
        admin = self.core_admin_ports
        cores = [
            self._spawn("core", port, f"core{i}", admin_port, core_app)
            for i, (port, admin_port) in enumerate(zip(self.core_ports, admin, strict=True))
        ]
        edges = [self._spawn("edge", port, f"edge{i}") for i, port in enumerate(self.edge_ports)]
        try:
            for port, process in zip(admin, cores, strict=True):
                wait_http(f"http://127.0.0.1:{port}/healthz", process=process)
            for port, process in zip(self.edge_ports, edges, strict=True):
                wait_http(f"http://127.0.0.1:{port}/healthz", process=process)
        except Exception as exc:
            self.stop()
            raise RuntimeError(self.read_logs()) from exc
        return self

    @property
    def edge_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.edge_ports]

    def core_log(self, index: int) -> str:
        path = self.logs[f"core{index}"]
        return path.read_text(errors="replace") if path.exists() else ""
