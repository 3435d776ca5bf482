"""infra/interlock.example.yaml as the config tests read it: the file, its reference block of
every provider option (commented out between `# reference:begin` and `# reference:end`, read
here uncommented), and an environment with a value for every ${VAR} it uses."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

EXAMPLE = Path(__file__).resolve().parents[2] / "infra" / "interlock.example.yaml"
BEGIN, END = "# reference:begin", "# reference:end"
PREFIX = "  # "  # the block's entries sit under `providers:`, commented out
SECRET_MARK = "SECRETVALUE"  # in every value fake_env gives: never printed by the tools


@cache
def block() -> tuple[str, ...]:
    """The reference block's lines, uncommented."""
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == BEGIN)
    end = next(i for i, line in enumerate(lines) if line.strip() == END)
    out = []
    for line in lines[start + 1 : end]:
        assert line.startswith(PREFIX) or line == PREFIX.rstrip(), line
        out.append(line[len(PREFIX) :])
    return tuple(out)


def reference() -> dict[str, dict[str, Any]]:
    """The reference block's provider entries, by name."""
    entries: dict[str, dict[str, Any]] = yaml.safe_load("\n".join(block()))
    return entries


def example(with_reference: bool = False) -> dict[str, Any]:
    """The example as parsed YAML (${VAR}s not resolved), optionally with the reference
    block's providers added to its own."""
    raw: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    if with_reference:
        raw["providers"].update(reference())
    return raw


def fake_env() -> dict[str, str]:
    """A value for every ${VAR} (without a default) the example uses, commented or not."""
    names = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)\}", EXAMPLE.read_text(encoding="utf-8")))
    return {name: f"fake-{name.lower()}-{SECRET_MARK}-" + "x" * 24 for name in names}
