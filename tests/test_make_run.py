"""`make run` (= `interlock up`) on a fresh directory: keys are created, a token is printed,
and the printed copy-paste examples work against the running gateway."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.net import free_port
from tests.support.stack import ROOT


def _read_until(process: subprocess.Popen[str], marker: str, timeout: float = 60) -> list[str]:
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


def test_interlock_up_prints_working_examples(tmp_path: Path) -> None:
    edge_port, core_port = free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("INTERLOCK_", "OPENAI_", "ANTHROPIC_"))
    }
    env.update(
        {
            "INTERLOCK_EDGE_PORT": str(edge_port),
            "INTERLOCK_CORE_PORT": str(core_port),
            "INTERLOCK_CORE_ADMIN_PORT": str(free_port()),
            "PYTHONPATH": str(ROOT),
        }
    )
    interlock = str(Path(sys.executable).with_name("interlock"))
    process = subprocess.Popen(
        [interlock, "up"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        lines = _read_until(process, "Ctrl-C stops both tiers")
        assert (tmp_path / ".interlock" / "signing-key.pem").stat().st_mode & 0o077 == 0
        assert (tmp_path / ".interlock" / "jwks.json").is_file()
        export = next(line for line in lines if line.startswith("export INTERLOCK_TOKEN="))
        curl = next(line for line in lines if line.startswith("curl "))
        python = next(line for line in lines if line.startswith("python3 -c"))
        assert f"127.0.0.1:{edge_port}" in curl

        shell_env = {**env, "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}"}
        result = subprocess.run(
            ["bash", "-c", export + curl],
            capture_output=True,
            text=True,
            env=shell_env,
            timeout=30,
            check=True,
        )
        answer = json.loads(result.stdout)
        assert answer["object"] == "chat.completion"
        assert answer["choices"][0]["message"]["content"]
        assert answer["usage"]["total_tokens"] > 0

        result = subprocess.run(
            ["bash", "-c", export + python],
            capture_output=True,
            text=True,
            env=shell_env,
            timeout=60,
            check=True,
        )
        assert result.stdout.strip() == answer["choices"][0]["message"]["content"]
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
