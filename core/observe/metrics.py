"""GET /metrics on the core: Prometheus text for what operators alert on.

Hand-written text format (no client library on the hot path): shared-state health, Redis
outages and how many calls fell back to per-process state, which targets' circuits are open,
how many entries the per-target structures hold, how often each background job failed, and
how often a target sent data that crashed a parser (core.providers.parsing).
Label values are configured names only (targets, `<provider>/*` for every tenant-named model
of a provider, job names fixed by the code), never tenant input, so the page has a size fixed
by the config.
"""

from __future__ import annotations

from core.budgets.alerts import alerts_total
from core.budgets.enforce import warnings_total
from core.cache.affinity import metric_lines as affinity_lines
from core.observe.cache_writes import CACHE_WRITES
from core.providers.gemini_cache import cache_counts
from core.providers.parsing import crash_counts
from core.resilience.circuit import State
from core.resilience.circuit_board import BreakerBoard
from core.state.resilient import ResilientStore
from core.state.store import Store
from shared.periodic import failure_counts


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(store: Store, breakers: BreakerBoard, entries: dict[str, int] | None = None) -> bytes:
    """`entries`: size of each bounded per-target structure, by a fixed structure name."""
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
    lines += [
        "# HELP interlock_background_job_failures_total Runs of a background job that raised.",
        "# TYPE interlock_background_job_failures_total counter",
    ]
    lines += [
        f'interlock_background_job_failures_total{{job="{_escape(job)}"}} {count}'
        for job, count in sorted(failure_counts().items())
    ]
    lines += [
        "# HELP interlock_upstream_parser_crashes_total Upstream data that crashed a parser "
        "(answered as an invalid upstream response; a gap in the parser's shape checks).",
        "# TYPE interlock_upstream_parser_crashes_total counter",
    ]
    lines += [
        f'interlock_upstream_parser_crashes_total{{target="{_escape(target)}"}} {count}'
        for target, count in sorted(crash_counts().items())
    ]
    lines += _budget_lines()
    lines += affinity_lines()
    lines += [
        "# HELP interlock_gemini_context_cache_total Gemini context caches created, recreated "
        "(expired or gone) and reused, and cache markers dropped (the request went uncached).",
        "# TYPE interlock_gemini_context_cache_total counter",
    ]
    lines += [
        f'interlock_gemini_context_cache_total{{event="{event}"}} {n}'
        for event, n in sorted(cache_counts().items())
    ]
    lines += [
        "# HELP interlock_prompt_cache_writes_unread_total Requests that wrote a prompt-cache "
        "prefix in a 5-minute window in which the target served no cache read "
        "(core.observe.cache_writes).",
        "# TYPE interlock_prompt_cache_writes_unread_total counter",
    ]
    lines += [
        f'interlock_prompt_cache_writes_unread_total{{target="{_escape(target)}"}} {count}'
        for target, count in sorted(CACHE_WRITES.flush().items())
    ]
    if entries:
        lines += [
            "# HELP interlock_state_entries Entries held by a bounded per-target structure.",
            "# TYPE interlock_state_entries gauge",
        ]
        lines += [f'interlock_state_entries{{kind="{k}"}} {v}' for k, v in sorted(entries.items())]
    return ("\n".join(lines) + "\n").encode()


def _budget_lines() -> list[str]:
    """Budget alerts fired and warn-budget overruns; labels are configured budget names."""
    lines = [
        "# HELP interlock_budget_alerts_total Budget thresholds reached (fired once per period).",
        "# TYPE interlock_budget_alerts_total counter",
    ]
    lines += [
        f'interlock_budget_alerts_total{{budget="{_escape(name)}",percent="{pct}"}} {n}'
        for (name, pct), n in sorted(alerts_total.items())
    ]
    lines += [
        "# HELP interlock_budget_over_total Requests served over a warn-only budget.",
        "# TYPE interlock_budget_over_total counter",
    ]
    lines += [
        f'interlock_budget_over_total{{budget="{_escape(name)}"}} {n}'
        for name, n in sorted(warnings_total.items())
    ]
    return lines
