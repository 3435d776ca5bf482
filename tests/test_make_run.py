"""`make run` (= `interlock up`) on a fresh directory: keys are created, a token is printed,
and the printed copy-paste examples work against the running gateway."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.net import free_port
from tests.support.up import BANNER_END, read_until, start_up, up_env


def test_interlock_up_prints_working_examples(tmp_path: Path) -> None:
    edge_port = free_port()
    env = up_env(edge_port)
    process = start_up(tmp_path, env)
    try:
        lines = read_until(process, BANNER_END)
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
