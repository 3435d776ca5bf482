"""GET /metrics on the core: Prometheus text for what operators alert on.

Hand-written text format (no client library on the hot path): shared-state health, Redis
outages and how many calls fell back to per-process state, and which targets' circuits are open.
"""

from __future__ import annotations

from core.breaker import State
from core.breakers import BreakerBoard
from core.state.resilient import ResilientStore
from core.state.store import Store


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(store: Store, breakers: BreakerBoard) -> bytes:
    lines: list[str] = []
    if isinstance(store, ResilientStore):
        lines += [
            "# HELP interlock_redis_up Whether the last call to Redis succeeded.",
            "# TYPE interlock_redis_up gauge",
            f"interlock_redis_up {int(store.healthy)}",
            "# HELP interlock_redis_outages_total Times Redis became unreachable.",
            "# TYPE interlock_redis_outages_total counter",
            f"interlock_redis_outages_total {store.outages}",
            "# HELP interlock_redis_fallback_calls_total Calls served from per-process state.",
            "# TYPE interlock_redis_fallback_calls_total counter",
            f"interlock_redis_fallback_calls_total {store.fallback_calls}",
        ]
    lines += [
        "# HELP interlock_circuit_open Whether a target's circuit breaker is open (1) or not.",
        "# TYPE interlock_circuit_open gauge",
    ]
    for label in breakers.labels():
        is_open = int(breakers.state(label) is not State.CLOSED)
        lines.append(f'interlock_circuit_open{{target="{_escape(label)}"}} {is_open}')
    return ("\n".join(lines) + "\n").encode()
