"""W3C trace context (traceparent) without the OpenTelemetry SDK on the hot path."""

from __future__ import annotations

import os
import random

HEADER = "traceparent"

# Span ids need uniqueness, not secrecy: the PRNG avoids a getrandom syscall per request.
# (Trace ids of new traces still come from os.urandom.)
_rng = random.Random(os.urandom(16))
_span = _rng.getrandbits
# Workers forked after import must not repeat each other's span ids.
os.register_at_fork(after_in_child=lambda: _rng.seed(os.urandom(16)))


def new_span_id() -> int:
    """A span id (never 0): the core's spans take theirs from here too (core.observe.otel)."""
    return _span(64) or 1


def _span_id() -> str:
    return f"{new_span_id():016x}"


_HEX = frozenset("0123456789abcdef")


def _valid(value: str, length: int) -> bool:
    return len(value) == length and set(value) <= _HEX and value != "0" * length


def parse(incoming: str | None) -> tuple[str, str, str] | None:
    """(trace id, parent span id, flags) of a valid version-00 traceparent, else None."""
    if incoming:
        parts = incoming.strip().lower().split("-")
        if len(parts) >= 4 and parts[0] == "00" and _valid(parts[1], 32) and _valid(parts[2], 16):
            flags = parts[3] if len(parts[3]) == 2 and set(parts[3]) <= _HEX else "01"
            return parts[1], parts[2], flags
    return None


def child_of(incoming: str | None) -> str:
    """Continue the caller's trace with a new span id, or start a new sampled trace."""
    parsed = parse(incoming)
    if parsed is not None:
        return f"00-{parsed[0]}-{_span_id()}-{parsed[2]}"
    return f"00-{os.urandom(16).hex()}-{_span_id()}-01"


def forwarded(incoming: str | None) -> str | None:
    """What a hop that records no span of its own passes on (the edge): the caller's
    traceparent unchanged (normalised), or none, so the next tier that does record (the core)
    is the child of the caller's span, or the root of a new trace, never of a span nobody
    exported."""
    parsed = parse(incoming)
    return None if parsed is None else f"00-{parsed[0]}-{parsed[1]}-{parsed[2]}"


def received(incoming: str | None) -> str:
    """The traceparent a request arrived with, normalised, or a new trace's when it had none
    or an invalid one: every request the core serves belongs to exactly one trace id."""
    return forwarded(incoming) or child_of(None)


def trace_id_of(traceparent: str) -> str:
    """The trace id of a traceparent `received` returned (32 hex digits)."""
    return traceparent[3:35]
