"""GET /metrics on the core: what operators alert on, as metric families (prometheus_client
renders them: core.observe.exposition). Shared-state health, Redis
outages and how many calls fell back to per-process state, which targets' circuits are open,
how many entries the per-target structures hold, how often each background job failed, and
how often a target sent data that crashed a parser (core.providers.parsing), and how old each
referenced secret is (shared.secret_refresh).
Label values are configured names only (targets, `<provider>/*` for every tenant-named model
of a provider, job names fixed by the code), never tenant input, so the page has a size fixed
by the config.
"""

from __future__ import annotations

from prometheus_client.core import Metric

from core.budgets.alerts import alerts_total
from core.budgets.enforce import warnings_total
from core.cache.affinity import metric_family as affinity_family
from core.observe.cache_writes import CACHE_WRITES
from core.observe.families import by, counter, counters, gauge, gauges
from core.providers.gemini_cache import cache_counts
from core.providers.parsing import crash_counts
from core.resilience.circuit import State
from core.resilience.circuit_board import BreakerBoard
from core.state.resilient import ResilientStore
from core.state.resp import Sent
from core.state.store import Store
from shared.periodic import failure_counts
from shared.secret_refresh import live_ages


def families(
    store: Store, breakers: BreakerBoard, entries: dict[str, int] | None = None
) -> list[Metric]:
    """`entries`: size of each bounded per-target structure, by a fixed structure name."""
    out = _store_families(store)
    circuits = {
        (label,): float(breakers.state(label) is not State.CLOSED) for label in breakers.labels()
    }
    out += [
        gauges(
            "interlock_circuit_open",
            "Whether a target's circuit breaker is open (1) or not.",
            ("target",),
            circuits.items(),
        ),
        counters(
            "interlock_background_job_failures_total",
            "Runs of a background job that raised.",
            ("job",),
            by(failure_counts()),
        ),
        counters(
            "interlock_upstream_parser_crashes_total",
            "Upstream data that crashed a parser (answered as an invalid upstream response; "
            "a gap in the parser's shape checks).",
            ("target",),
            by(crash_counts()),
        ),
        *_budget_families(),
        *_secret_families(),
        *_prompt_cache_families(),
    ]
    if entries:
        out.append(
            gauges(
                "interlock_state_entries",
                "Entries held by a bounded per-target structure.",
                ("kind",),
                by(entries),
            )
        )
    return out


def _store_families(store: Store) -> list[Metric]:
    if not isinstance(store, ResilientStore):
        return []
    return [
        gauge("interlock_redis_up", "Whether the last call to Redis succeeded.", store.healthy),
        counter("interlock_redis_outages_total", "Times Redis became unreachable.", store.outages),
        counter(
            "interlock_redis_fallback_calls_total",
            "Calls served from per-process state.",
            store.fallback_calls,
        ),
        counter(
            "interlock_redis_commands_total",
            "Commands sent to Redis (each one round trip; a script call is one).",
            Sent.count,
        ),
    ]


def _prompt_cache_families() -> list[Metric]:
    return [
        counters(
            "interlock_gemini_context_cache_total",
            "Gemini context caches created, recreated (expired or gone) and reused, and cache "
            "markers dropped (the request went uncached).",
            ("event",),
            by(cache_counts()),
        ),
        counters(
            "interlock_prompt_cache_writes_unread_total",
            "Requests that wrote a prompt-cache prefix in a 5-minute window in which the "
            "target served no cache read (core.observe.cache_writes).",
            ("target",),
            by(CACHE_WRITES.flush()),
        ),
        affinity_family(),
    ]


def _budget_families() -> list[Metric]:
    """Budget alerts fired and warn-budget overruns; labels are configured budget names."""
    alerts = {(name, str(pct)): float(n) for (name, pct), n in alerts_total.items()}
    return [
        counters(
            "interlock_budget_alerts_total",
            "Budget thresholds reached (fired once per period).",
            ("budget", "percent"),
            alerts.items(),
        ),
        counters(
            "interlock_budget_over_total",
            "Requests served over a warn-only budget.",
            ("budget",),
            by(warnings_total),
        ),
    ]


def _secret_families() -> list[Metric]:
    """Each referenced secret's age, labelled by the setting it was given for (a config key):
    since the last good read (grows while refreshes fail) and since its value changed."""
    ages = live_ages()
    if not ages:
        return []
    read = {(setting,): age for setting, _, age, _ in ages}
    changed = {(setting,): age for setting, _, _, age in ages}
    return [
        gauges(
            "interlock_secret_refresh_age_seconds",
            "Seconds since a referenced secret was last read successfully.",
            ("setting",),
            read.items(),
        ),
        gauges(
            "interlock_secret_value_age_seconds",
            "Seconds since a referenced secret's value last changed (or was first read).",
            ("setting",),
            changed.items(),
        ),
    ]
