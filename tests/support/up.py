"""`interlock up` (what `make run` runs) as a test starts it: in a directory of its own, on free
loopback ports, with no provider keys or interlock settings inherited from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.support.net import free_port
from tests.support.stack import ROOT

BANNER_END = "Ctrl-C stops both tiers"


def up_env(edge_port: int) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("INTERLOCK_", "OPENAI_", "ANTHROPIC_"))
    }
    env.update(
        {
            "INTERLOCK_EDGE_PORT": str(edge_port),
            "INTERLOCK_CORE_PORT": str(free_port()),
            "INTERLOCK_CORE_ADMIN_PORT": str(free_port()),
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def start_up(workdir: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """`interlock up` in its own session (stop it with os.killpg(process.pid, SIGTERM))."""
    interlock = str(Path(sys.executable).with_name("interlock"))
    return subprocess.Popen(
        [interlock, "up"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


def read_until(process: subprocess.Popen[str], marker: str, timeout: float = 60) -> list[str]:
    """The lines printed up to and including the one with `marker`."""
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError("interlock up exited early:\n" + "".join(lines))
        lines.append(line)
        if marker in line:
            return lines
    raise AssertionError("no ready banner:\n" + "".join(lines))
