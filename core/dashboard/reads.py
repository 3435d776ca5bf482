"""The dashboard's reads of raw ledger records: recent health (latency, time to first token,
outcomes by failure class, response-cache savings) and the request log (metadata only).

Spend and tokens come from the usage API (rollups); what rollups do not hold (outcomes,
latencies, request ids) is read here from the raw records. Those reads walk the range one
partition at a time, newest first, and stop once they hold enough rows, so what one costs is
bounded by the sample size and one partition, never by the range: health is computed over the
latest HEALTH_SAMPLE records of the range (the page says so), the log reads one page. Each
partition's read uses the store's period index (or its (tenant, ts) index for a tenant).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from core.ledger import query as q
from core.ledger.codec import COLUMNS
from core.ledger.periods import period_of, period_start
from core.ledger.store import LedgerStore

HEALTH_SAMPLE = 20_000  # records the health panel is computed over (the latest of the range)
MAX_LOG_ROWS = 200
MAX_PERIODS = 100  # partitions one read walks at most (the API's 92-day range is fewer)
# Every ledger has the trace id column now (both stores add it to an older table when they
# open it); the page still asks (`whoami`), so it works against a core from before it.
HAS_TRACE_ID = "trace_id" in COLUMNS
_LOG_COLUMNS = (
    "request_id",
    "ts",
    "tenant",
    "tags",
    "api",
    "requested_model",
    "served_model",
    "provider",
    "key_id",
    "input",
    "cache_read",
    "cache_write_5m + cache_write_1h",
    "output",
    "cost_micros",
    "outcome",
    "attempts",
    "latency_ms",
    "ttft_ms",
    *(("trace_id",) if HAS_TRACE_ID else ()),
    *("images", "audio_ms", "characters"),  # the media units (both stores add the columns)
)
_LOG_NAMES = (
    *("request_id", "ts", "tenant", "tags", "api", "model", "served_model", "provider"),
    *("key_id", "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens"),
    *("cost_micros", "outcome", "attempts", "latency_ms", "ttft_ms"),
    *(("trace_id",) if HAS_TRACE_ID else ()),
    *("images", "audio_ms", "characters"),
)
_HEALTH_COLUMNS = (
    "ts",
    "COALESCE(provider, '')",
    "outcome",
    "latency_ms",
    "ttft_ms",
    "saved_input",
    "saved_output",
)
# Request-log filters: query parameter -> column.
LOG_FILTERS = {
    "model": "requested_model",
    "provider": "provider",
    "outcome": "outcome",
    "request_id": "request_id",
}


@dataclass(frozen=True)
class Scope:
    """What a read covers: the range, the tenant (None: every tenant, operators only), and
    equality filters on raw columns."""

    start: float
    end: float
    tenant: str | None
    filters: dict[str, str]


class RawReads:
    def __init__(self, store: LedgerStore, partition: str, dialect: q.Dialect) -> None:
        self._store = store
        self._partition = partition
        self._dialect = dialect
        self._opened = False

    async def _open(self) -> None:
        """The writer opens the store at its first flush; the page may ask before that
        (`open` is idempotent and safe to call concurrently)."""
        if not self._opened:
            await self._store.open()
            self._opened = True

    async def _newest_first(
        self, columns: tuple[str, ...], scope: Scope, want: int
    ) -> list[tuple[Any, ...]]:
        """Up to `want` records of the scope, newest first, one partition at a time."""
        await self._open()
        out: list[tuple[Any, ...]] = []
        first = period_of(scope.start, self._partition)
        period = period_of(max(scope.start, scope.end - 1e-6), self._partition)
        walked = 0
        while period >= first and len(out) < want and walked < MAX_PERIODS:
            text, args = self._sql(columns, scope, period, want - len(out))
            out += await self._store.read(text, args)
            period -= 1
            walked += 1
        return out

    def _sql(
        self, columns: tuple[str, ...], scope: Scope, period: int, limit: int
    ) -> tuple[str, list[Any]]:
        args: list[Any] = []

        def arg(value: Any, kind: str) -> str:
            args.append(value)
            return self._dialect.param(len(args), kind)

        start = max(scope.start, period_start(period, self._partition))
        where = [f"period = {arg(period, 'int')}", f"ts >= {arg(float(start), 'float')}"]
        where.append(f"ts < {arg(float(scope.end), 'float')}")
        if scope.tenant is not None:
            where.append(f"tenant = {arg(scope.tenant, 'text')}")
        for column, value in sorted(scope.filters.items()):
            where.append(f"{column} = {arg(value, 'text')}")
        text = f"SELECT {', '.join(columns)} FROM ledger_records WHERE {' AND '.join(where)}"
        return f"{text} ORDER BY ts DESC LIMIT {arg(limit, 'int')}", args

    async def health(self, scope: Scope) -> dict[str, Any]:
        rows = await self._newest_first(_HEALTH_COLUMNS, scope, HEALTH_SAMPLE)
        return summarize(rows)

    async def log(self, scope: Scope, limit: int) -> list[dict[str, Any]]:
        rows = await self._newest_first(_LOG_COLUMNS, scope, limit)
        return [_log_row(row) for row in rows]


def _log_row(row: tuple[Any, ...]) -> dict[str, Any]:
    fields = dict(zip(_LOG_NAMES, row, strict=True))
    try:
        fields["tags"] = orjson.loads(fields["tags"] or "{}")
    except orjson.JSONDecodeError:
        fields["tags"] = {}
    return fields


def percentile(sorted_values: list[float], share: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, -(-int(share * 1000) * len(sorted_values) // 1000))
    return round(sorted_values[min(rank, len(sorted_values)) - 1], 3)


def _served(outcome: str) -> bool:
    """Answered in full: a stream cut (cut:<class>) counts as a failure of its class."""
    return outcome in ("ok", "cache_hit", "coalesced")


def summarize(rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    """Per provider: requests, outcomes by class, p50/p95 latency and time to first chunk
    (milliseconds); overall outcomes and what the response cache and coalescing saved."""
    providers: dict[str, dict[str, Any]] = {}
    outcomes: dict[str, int] = {}
    saved = {"requests": 0, "input_tokens": 0, "output_tokens": 0}
    for _ts, provider, outcome, latency, ttft, saved_in, saved_out in rows:
        entry = providers.setdefault(
            provider, {"requests": 0, "errors": 0, "outcomes": {}, "lat": [], "ttft": []}
        )
        entry["requests"] += 1
        entry["outcomes"][outcome] = entry["outcomes"].get(outcome, 0) + 1
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if not _served(outcome) and outcome != "cancelled":
            entry["errors"] += 1
        if latency is not None:
            entry["lat"].append(float(latency))
        if ttft is not None:
            entry["ttft"].append(float(ttft))
        if saved_in or saved_out:
            saved["requests"] += 1
            saved["input_tokens"] += int(saved_in or 0)
            saved["output_tokens"] += int(saved_out or 0)
    return {
        "sample": len(rows),
        "sample_max": HEALTH_SAMPLE,
        "since": min((float(r[0]) for r in rows), default=None),
        "outcomes": outcomes,
        "saved": saved,
        "providers": [_provider(name, entry) for name, entry in sorted(providers.items())],
    }


def _provider(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    lat, ttft = sorted(entry["lat"]), sorted(entry["ttft"])
    return {
        "provider": name or "(none)",
        "requests": entry["requests"],
        "errors": entry["errors"],
        "error_rate": round(entry["errors"] / entry["requests"], 4),
        "outcomes": entry["outcomes"],
        "latency_ms": {"p50": percentile(lat, 0.5), "p95": percentile(lat, 0.95)},
        "ttft_ms": {"p50": percentile(ttft, 0.5), "p95": percentile(ttft, 0.95)},
    }
