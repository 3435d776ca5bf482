"""Finding and reading interlock.yaml: shared by the full loader (shared/config.py, the core and
the CLI) and the edge's own loader (shared/config_edge.py), so both tiers pick the same file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from shared.configparse import ConfigError

PathLike = str | os.PathLike[str]


def read_config_file(path: PathLike | None, env: dict[str, str]) -> tuple[Any, str] | None:
    """The parsed YAML and its file name, from `path`, $INTERLOCK_CONFIG or ./interlock.yaml;
    None when there is no file at all (each tier then has its own embedded defaults)."""
    chosen = path or env.get("INTERLOCK_CONFIG")
    if chosen is None and Path("interlock.yaml").is_file():
        chosen = "interlock.yaml"
    if chosen is None:
        return None
    file = Path(chosen)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read config file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML ({exc})") from None
    return (raw if raw is not None else {}), str(file)
