"""The tiers' log lines as a log pipeline reads them: one JSON object per line (shared.logs)."""

from __future__ import annotations

from typing import Any

import orjson


def json_lines(logs: str, logger: str | None = None) -> list[dict[str, Any]]:
    """Every JSON line of `logs` (of `logger` only, if given); lines that are not JSON (a
    subprocess's own output before logging is set up) are skipped."""
    out = []
    for line in logs.splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(entry, dict) and (logger is None or entry.get("logger") == logger):
            out.append(entry)
    return out


def usage_entries(logs: str) -> list[dict[str, Any]]:
    """The core's usage lines (one per request)."""
    return json_lines(logs, "interlock.usage")
