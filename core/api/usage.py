"""GET /v1/usage: what the ledger holds, grouped and totalled, for the caller's own tenant.

A read API, not a model request: it runs none of the pipeline's stages, only the hop check
every endpoint has. The query's tenant is ALWAYS the caller's for a tenant token, whatever the
parameters say (a `tenant=` naming another tenant is a 403); the ledger store puts the tenant
in every WHERE clause, so neither a filter nor a cursor taken from another tenant's page can
reach its rows. An operator token (`admin` claim) sees every tenant and may filter by one.

Parameters (each at most once; an unknown one is a 400 naming it, so a typo never widens a
report): `start`, `end` (unix seconds or RFC 3339; default the current UTC day), `group_by`
(comma list of minute|hour|day, tenant, model, provider, served_model, tag:<key>), the filters
`model`, `provider`, `served_model`, `tag=<key>:<value>`, `tenant` (operators), `limit`
(1-1000), `cursor` (the previous page's `next_cursor`), `format=json|csv` (or Accept:
text/csv). The range is bounded by what it reads (core.ledger.query.MAX_SPAN_S: 7 days of raw
records or minute rollups, 92 of hour rollups, 3660 of day rollups); a longer one is a 400
naming `end`. Each row counts requests, tokens, cost and the media units (images, seconds of
audio transcribed, characters spoken). The parsing and rendering here are shared with
`interlock usage` (core.ops.usage).
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from core.api.identity import Caller
from core.ledger.query import MAX_TEXT, MAX_TIME, check
from core.ledger.store import TIME_BUCKETS, LedgerStore, UsagePage, UsageQuery, UsageRow
from shared.errors import GatewayError

FILTERS = ("model", "provider", "served_model")
PARAMS = frozenset(
    {"start", "end", "group_by", "tag", "tenant", "limit", "cursor", "format", *FILTERS}
)
METRICS = (
    "requests",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "cost",
    "cost_micros",
    "images",
    "audio_seconds",
    "characters",
)
DEFAULT_LIMIT = 100
MAX_VALUE_CHARS = MAX_TEXT  # any one parameter's value: far above a real model name or tag
_DAY_S = 86400
_CSV_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def invalid(param: str, message: str) -> GatewayError:
    return GatewayError(400, f"{param}: {message}", param=param, code="invalid_usage_parameter")


def parse_time(value: str, param: str) -> float:
    """Unix seconds or an RFC 3339 time (UTC when it names no offset)."""
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise invalid(param, "expected unix seconds or an RFC 3339 time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = moment.timestamp()
    if not (math.isfinite(seconds) and 0 <= seconds < MAX_TIME):
        raise invalid(param, "out of range")
    return seconds


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _group_by(value: str | None) -> tuple[str, ...]:
    names = tuple(name.strip() for name in (value or "").split(",") if name.strip())
    if len(set(names)) != len(names):
        raise invalid("group_by", "a grouping is named twice")
    return names


def _filters(params: Mapping[str, str]) -> dict[str, str]:
    filters = {name: params[name] for name in FILTERS if name in params}
    tag = params.get("tag")
    if tag is not None:
        key, sep, value = tag.partition(":")
        if not (sep and key and value):
            raise invalid("tag", "expected <key>:<value>, e.g. project:search")
        filters[f"tag:{key}"] = value
    return filters


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not (value.isascii() and value.isdigit()):  # "²".isdigit(), but int() refuses it
        raise invalid("limit", "expected a whole number from 1 to 1000")
    return int(value)


def scoped_tenant(own: str | None, requested: str | None) -> str | None:
    """The tenant the query is scoped to: the caller's `own` for a tenant token (naming any
    other is a 403), the requested one or every tenant (None) for an operator (`own` None)."""
    if own is None:
        return requested
    if requested is not None and requested != own:
        raise GatewayError(
            403,
            "tenant: a tenant token reads only its own tenant's usage",
            param="tenant",
            code="cross_tenant_forbidden",
        )
    return own


def parse_query(params: Mapping[str, str], own: str | None, now: float) -> UsageQuery:
    """The UsageQuery the parameters ask for, or a 400/403 naming the parameter. `own`: the
    tenant token's tenant, or None for an operator (admin token, or the CLI)."""
    for name, value in params.items():
        if not name:
            raise GatewayError(
                400, "a parameter has no name", param="", code="invalid_usage_parameter"
            )
        if name not in PARAMS:
            raise invalid(name[:64], "unknown parameter")
        if len(value) > MAX_VALUE_CHARS:
            raise invalid(name, f"longer than {MAX_VALUE_CHARS} characters")
        if "\x00" in value:  # PostgreSQL's text cannot hold it: refused on either store
            raise invalid(name, "contains a NUL character")
    day = now // _DAY_S * _DAY_S
    start = parse_time(params["start"], "start") if "start" in params else day
    end = parse_time(params["end"], "end") if "end" in params else day + _DAY_S
    cursor = params.get("cursor")
    query = UsageQuery(
        start=start,
        end=end,
        tenant=scoped_tenant(own, params.get("tenant")),
        group_by=_group_by(params.get("group_by")),
        filters=_filters(params),
        limit=_limit(params.get("limit")),
        cursor=cursor or None,
    )
    try:
        check(query)  # the store's own rules, checked before any database is asked
    except ValueError as error:
        raise from_store_error(error) or invalid("group_by", str(error)) from None
    return query


def from_store_error(error: ValueError) -> GatewayError | None:
    """The store's own checks (core.ledger.query) say "<param>: why"; None if not one."""
    param, sep, _ = str(error).partition(":")
    if sep and param in {"start", "end", "group_by", "limit", "cursor"}:
        return GatewayError(400, str(error), param=param, code="invalid_usage_parameter")
    return None


async def read_usage(store: LedgerStore, query: UsageQuery) -> tuple[UsagePage, UsageRow | None]:
    """The page, and the totals over the whole range and filters (every page, every group)."""
    page = await store.usage(query)
    whole = UsageQuery(query.start, query.end, query.tenant, (), query.filters, 1)
    totals = await store.usage(whole)
    return page, (totals.rows[0] if totals.rows else None)


def dollars(micros: int) -> str:
    """Integer micro-dollars as an exact decimal string: 1234 -> "0.001234"."""
    whole, frac = divmod(micros, 1_000_000)
    return f"{whole}.{frac:06d}"


def seconds(milliseconds: int) -> int | float:
    """Audio milliseconds as seconds: a whole number when whole, else to the millisecond."""
    whole, part = divmod(milliseconds, 1000)
    return whole if not part else round(milliseconds / 1000, 3)


def _metrics(row: UsageRow | None) -> dict[str, Any]:
    if row is None:
        return {name: "0.000000" if name == "cost" else 0 for name in METRICS}
    return {
        "requests": row.requests,
        "input_tokens": row.input_tokens,
        "cache_read_tokens": row.cache_read_tokens,
        "cache_write_tokens": row.cache_write_tokens,
        "output_tokens": row.output_tokens,
        "cost": dollars(row.cost_micros),
        "cost_micros": row.cost_micros,
        "images": row.images,
        "audio_seconds": seconds(row.audio_ms),
        "characters": row.characters,
    }


def row_fields(row: UsageRow) -> dict[str, Any]:
    """One row as the API shows it: group values (time buckets as RFC 3339), then metrics."""
    group = {
        name: iso(int(value)) if name in TIME_BUCKETS else value
        for name, value in row.group.items()
    }
    return {**group, **_metrics(row)}


def to_json(query: UsageQuery, page: UsagePage, totals: UsageRow | None) -> bytes:
    return orjson.dumps(
        {
            "object": "list",
            "start": iso(query.start),
            "end": iso(query.end),
            "group_by": list(query.group_by),
            "data": [row_fields(row) for row in page.rows],
            "has_more": page.next_cursor is not None,
            "next_cursor": page.next_cursor,
            "totals": _metrics(totals),
        }
    )


def _cell(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (tag values are the tenant's own
    words) is quoted with a leading apostrophe (OWASP's CSV injection advice)."""
    return f"'{value}" if isinstance(value, str) and value.startswith(_CSV_FORMULA) else value


def to_csv(query: UsageQuery, page: UsagePage) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*query.group_by, *METRICS])
    for row in page.rows:
        writer.writerow([_cell(value) for value in row_fields(row).values()])
    return out.getvalue()


def _wants_csv(request: Request, params: Mapping[str, str]) -> bool:
    fmt = params.get("format")
    if fmt is not None and fmt not in ("json", "csv"):
        raise invalid("format", "expected json or csv")
    return fmt == "csv" or (fmt is None and "text/csv" in request.headers.get("accept", ""))


class UsageApi:
    """The endpoint; `store` is the ledger writer's store (None when the ledger is off)."""

    def __init__(self, store: LedgerStore | None, timeout_s: float) -> None:
        self._store = store
        self._timeout_s = timeout_s
        self._opened = False
        self._opening = asyncio.Lock()

    async def __call__(self, request: Request, caller: Caller, body: bytes) -> Response:
        params = dict(request.query_params)
        if len(params) != len(request.query_params.multi_items()):
            name = _repeated(request.query_params.multi_items())
            raise invalid(name, "given more than once")
        query = parse_query(params, None if caller.admin else caller.tenant, time.time())
        wants_csv = _wants_csv(request, params)
        page, totals = await self._read(query)
        headers = {"x-request-id": caller.request_id}
        if wants_csv:
            if page.next_cursor is not None:
                headers["x-interlock-next-cursor"] = page.next_cursor
            return Response(to_csv(query, page), media_type="text/csv", headers=headers)
        body = to_json(query, page, totals)
        return Response(body, media_type="application/json", headers=headers)

    async def _read(self, query: UsageQuery) -> tuple[UsagePage, UsageRow | None]:
        store = self._store
        if store is None:
            raise GatewayError(
                404, "the usage ledger is disabled on this gateway", code="usage_off"
            )
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._open(store)
                return await read_usage(store, query)
        except ValueError as error:
            known = from_store_error(error)
            if known is None:
                raise _unavailable() from None
            raise known from None
        except (Exception, TimeoutError):
            raise _unavailable() from None

    async def _open(self, store: LedgerStore) -> None:
        """The writer opens the store at its first flush; the first query may come earlier."""
        if not self._opened:
            async with self._opening:
                if not self._opened:
                    await store.open()
                    self._opened = True


def _repeated(items: list[tuple[str, str]]) -> str:
    seen: set[str] = set()
    for name, _ in items:
        if name in seen:
            return name
        seen.add(name)
    return ""


def _unavailable() -> GatewayError:
    return GatewayError(
        503, "the usage ledger is unavailable; retry shortly", code="ledger_unavailable"
    )
