"""The Portkey gateway (Node, npm `@portkey-ai/gateway`) as a second comparison point.

Installed with npm into tests/bench/.portkey (gitignored, pinned exact, install scripts off),
run with the system `node`. Its CLI has no host option and listens on every interface, so a
small preload (written next to it) pins its listening sockets to 127.0.0.1; the harness also
checks at start and end that it holds only loopback sockets. NODE_ENV=production and
--headless leave out its local console UI and log stream; the 1.15.2 build carries no
telemetry or analytics client (checked in its bundle), DO_NOT_TRACK is set anyway.

Requests name the provider per call (x-portkey-provider: openai, the upstream key as the bearer
token, x-portkey-custom-host: the fake upstream's /v1): Portkey's documented header mode, no
config file, no cache, no retries (its default).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import orjson

from tests.bench.stack import UPSTREAM_KEY, HarnessError, Processes, wait_ready
from tests.support.net import free_port

PORTKEY_VERSION = "1.15.2"
PACKAGE = "@portkey-ai/gateway"
HOME = Path(__file__).resolve().parent / ".portkey"
SERVER = HOME / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
DESCRIPTION = (
    f"Portkey gateway {PACKAGE}@{PORTKEY_VERSION} on Node (`start-server.js --headless`, "
    "NODE_ENV=production), one process, provider chosen per request by x-portkey-* headers, "
    "no cache, no retries; listening sockets pinned to 127.0.0.1 by a preload"
)

_LOOPBACK_PRELOAD = """'use strict';
// Written by tests/bench/portkey.py: the gateway's CLI has no host option and would listen on
// every interface; the bench keeps it on loopback.
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (port, host, ...rest) {
  if (typeof port === 'number' && (host === undefined || typeof host === 'function')) {
    const tail = host === undefined ? rest : [host, ...rest];
    return listen.call(this, port, '127.0.0.1', ...tail);
  }
  return listen.call(this, port, host, ...rest);
};
"""


def available() -> bool:
    """node and npm on PATH: the Portkey target can be installed and run."""
    return shutil.which("node") is not None and shutil.which("npm") is not None


def _npm_env() -> dict[str, str]:
    keep = ("HOME", "PATH", "LANG", "TMPDIR")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update({"NPM_CONFIG_UPDATE_NOTIFIER": "false", "NPM_CONFIG_FUND": "false"})
    env["NPM_CONFIG_AUDIT"] = "false"
    return env


def ensure_installed(version: str = PORTKEY_VERSION) -> Path:
    """The gateway's entry script, installing `version` on first use (cached by a stamp)."""
    stamp = HOME / ".bench-installed"
    spec = f"{PACKAGE}@{version}"
    if SERVER.exists() and stamp.exists() and stamp.read_text().strip() == spec:
        return SERVER
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise HarnessError(
            "node and npm are needed for the Portkey comparison (apt-get install nodejs npm)"
        )
    print(f"installing {spec} into {HOME} (first run only) ...", flush=True)
    HOME.mkdir(parents=True, exist_ok=True)
    (HOME / ".gitignore").write_text("*\n")
    manifest = {"name": "interlock-bench-portkey", "private": True}
    (HOME / "package.json").write_bytes(orjson.dumps(manifest))
    argv = [npm, "install", "--save-exact", "--ignore-scripts", "--no-audit", "--no-fund", spec]
    result = subprocess.run(
        argv, cwd=HOME, env=_npm_env(), timeout=900, check=False, capture_output=True
    )
    if result.returncode != 0 or not SERVER.exists():
        raise HarnessError(
            f"installing Portkey failed:\n{result.stderr.decode(errors='replace')[-2000:]}"
        )
    stamp.write_text(spec + "\n")
    return SERVER


def version() -> str:
    try:
        data = orjson.loads((SERVER.parents[1] / "package.json").read_bytes())
    except (OSError, ValueError):
        return "unknown"
    return str(data.get("version", "unknown"))


def node_version() -> str | None:
    node = shutil.which("node")
    if node is None:
        return None
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10)
    return out.stdout.strip() or None


def request_headers(upstream_url: str) -> dict[str, str]:
    """What every request to Portkey carries: the provider, its key, the fake upstream."""
    return {
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": f"{upstream_url}/v1",
        "authorization": f"Bearer {UPSTREAM_KEY}",
    }


class Portkey:
    def __init__(self, procs: Processes, upstream_url: str) -> None:
        self.procs = procs
        self.port = free_port()
        self.headers = request_headers(upstream_url)
        self.pids: dict[str, int] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        server = ensure_installed()
        preload = HOME / "bench-loopback.cjs"
        preload.write_text(_LOOPBACK_PRELOAD)
        node = shutil.which("node") or "node"
        argv = [node, "--require", str(preload), str(server), f"--port={self.port}", "--headless"]
        env = {k: os.environ[k] for k in ("HOME", "PATH", "LANG", "TMPDIR") if k in os.environ}
        env.update({"NODE_ENV": "production", "DO_NOT_TRACK": "1", "NO_PROXY": "*"})
        process = self.procs.spawn("portkey", argv, env, cwd=HOME)
        wait_ready(self.procs, "portkey", f"{self.url}/", process)
        self.pids = {"portkey": process.pid}
