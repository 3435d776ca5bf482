"""The machine a bench ran on: CPUs, kernel, Python, the packages on the hot path, Redis."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _tool_version(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0] if lines else None


def machine_info() -> dict[str, Any]:
    packages: dict[str, str | None] = {}
    for dist in ("starlette", "aiohttp", "uvicorn", "orjson", "PyJWT", "uvloop", "httptools"):
        try:
            packages[dist.lower()] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            packages[dist.lower()] = None
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": packages,
        "redis_server": _tool_version(["redis-server", "--version"]),
        "loadavg_start": os.getloadavg(),
    }
