"""W3C trace context (traceparent) without the OpenTelemetry SDK on the hot path."""

from __future__ import annotations

import os

_HEX = frozenset("0123456789abcdef")


def _valid(value: str, length: int) -> bool:
    return len(value) == length and set(value) <= _HEX and value != "0" * length


def child_of(incoming: str | None) -> str:
    """Continue the caller's trace with a new span id, or start a new sampled trace."""
    if incoming:
        parts = incoming.strip().lower().split("-")
        if len(parts) >= 4 and parts[0] == "00" and _valid(parts[1], 32) and _valid(parts[2], 16):
            flags = parts[3] if len(parts[3]) == 2 and set(parts[3]) <= _HEX else "01"
            return f"00-{parts[1]}-{os.urandom(8).hex()}-{flags}"
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


def trace_id(traceparent: str) -> str:
    return traceparent.split("-")[1] if traceparent.count("-") >= 3 else ""
