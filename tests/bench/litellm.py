"""LiteLLM proxy as the comparison point, in its own virtualenv and sealed off from the network.

It gets a minimal config (one worker, no database, no callbacks, no retries, master-key auth
with a static key) pointed at the same fake upstream, and an environment built from scratch:
nothing from the project's venv, no proxies, local cost map, telemetry off, no .env loading.
After the run the harness checks that every TCP socket it held was loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.bench.stack import MODELS, UPSTREAM_KEY, HarnessError, Processes, wait_ready
from tests.support.net import free_port

LITELLM_SPEC = "litellm[proxy]==1.103.0"
VENV = Path(__file__).resolve().parent / ".litellm-venv"
MASTER_KEY = "sk-bench-master-key"
DESCRIPTION = (
    f"LiteLLM ({LITELLM_SPEC}): `litellm --num_workers 1` (uvicorn), no database, no callbacks, "
    "num_retries 0, auth by master key, uvicorn access log off, telemetry and remote cost map off"
)

# Uvicorn's access log off (interlock runs with --no-access-log too); errors still logged.
_LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stderr",
        }
    },
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
    },
}


def _clean_env() -> dict[str, str]:
    """Only what a process needs to run; the project's venv and any proxy settings stay out."""
    keep = ("HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["PATH"] = f"{VENV / 'bin'}:/usr/local/bin:/usr/bin:/bin"
    env["PYTHONNOUSERSITE"] = "1"
    return env


def ensure_venv(spec: str = LITELLM_SPEC) -> Path:
    """The venv's python, installing `spec` on first use (several minutes; cached by a stamp)."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".bench-installed"
    if python.exists() and stamp.exists() and stamp.read_text().strip() == spec:
        return python
    print(f"installing {spec} into {VENV} (first run only) ...", flush=True)
    env = _clean_env()
    steps = [
        [sys.executable, "-m", "venv", str(VENV)],
        [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
        [str(python), "-m", "pip", "install", "--quiet", spec],
    ]
    for number, argv in enumerate(steps):
        if number == 1:  # keep linters and git out of the venv (Python 3.11 venv adds none)
            (VENV / ".gitignore").write_text("*\n")
        result = subprocess.run(argv, env=env, timeout=1800, check=False, capture_output=True)
        if result.returncode != 0:
            raise HarnessError(
                f"installing LiteLLM failed at {' '.join(argv)}:\n"
                f"{result.stderr.decode(errors='replace')[-2000:]}"
            )
    stamp.write_text(spec + "\n")
    return python


def version(python: Path) -> str:
    code = "import importlib.metadata as m; print(m.version('litellm'))"
    out = subprocess.run(
        [str(python), "-c", code], env=_clean_env(), capture_output=True, text=True, timeout=60
    )
    return out.stdout.strip() or "unknown"


def litellm_env() -> dict[str, str]:
    env = _clean_env()
    env.update(
        {
            "LITELLM_TELEMETRY": "False",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the remote price list
            "LITELLM_MODE": "PRODUCTION",  # do not load a .env file
            "LITELLM_LOG": "ERROR",
            "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True",
            "DISABLE_ADMIN_UI": "True",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "DO_NOT_TRACK": "1",
            "NO_PROXY": "*",
        }
    )
    return env


def litellm_config(upstream_url: str) -> dict[str, object]:
    return {
        "model_list": [
            {
                "model_name": name,
                "litellm_params": {
                    "model": f"openai/{name}",
                    "api_base": f"{upstream_url}/v1",
                    "api_key": UPSTREAM_KEY,
                },
            }
            for name in MODELS
        ],
        "litellm_settings": {
            "num_retries": 0,
            "request_timeout": 600,
            "telemetry": False,
            "callbacks": [],
            "success_callback": [],
            "failure_callback": [],
        },
        "router_settings": {"num_retries": 0},
        "general_settings": {
            "master_key": MASTER_KEY,
            "disable_spend_logs": True,
            "disable_error_logs": True,
            "store_model_in_db": False,
        },
    }


class LiteLLM:
    def __init__(self, procs: Processes, python: Path, upstream_url: str) -> None:
        self.procs = procs
        self.python = python
        self.port = free_port()
        self.workdir = procs.workdir / "litellm"
        self.workdir.mkdir(exist_ok=True)
        self.config_path = self.workdir / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(litellm_config(upstream_url)))
        self.log_config = self.workdir / "log_config.json"
        self.log_config.write_text(json.dumps(_LOG_CONFIG))
        self.token = MASTER_KEY
        self.pids: dict[str, int] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [str(VENV / "bin" / "litellm"), "--config", str(self.config_path)]
        argv += ["--host", "127.0.0.1", "--port", str(self.port), "--num_workers", "1"]
        argv += ["--log_config", str(self.log_config)]
        process = self.procs.spawn("litellm", argv, litellm_env(), cwd=self.workdir)
        wait_ready(self.procs, "litellm", f"{self.url}/health/liveliness", process)
        self.pids = {"litellm": process.pid}
