"""GET /v1/dashboard/{panel}: the dashboard's reads the usage API does not answer.

Reached like the usage API (through the edge, the caller's token carried in the signed hop
credential), with the same rule for who sees what: a tenant token reads only its own tenant
(`tenant=` naming another is a 403), an operator token (`admin` claim) every tenant or one.
The `operations` panel (circuits, key pools, refusal counters) is operators' only: a tenant
token gets a 403 `operator_only`. Panels:

- `whoami`: the caller's tenant and role, and what the ledger can show (trace ids or not);
- `health`: outcomes by failure class, p50/p95 latency and time to first chunk per provider,
  response-cache savings, over the latest records of the range (core.dashboard.reads);
- `requests`: the request log, metadata only (never prompt or completion text), newest first,
  filtered by model, provider, outcome or request id; `before` pages to older records;
- `budgets`: the caller's budgets with consumption and reset, and its rate limits;
- `operations`: operators only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from core.api.identity import Caller
from core.api.usage import MAX_VALUE_CHARS, invalid, parse_time, scoped_tenant
from core.dashboard import live
from core.dashboard.reads import HAS_TRACE_ID, LOG_FILTERS, MAX_LOG_ROWS, RawReads, Scope
from core.ledger.query import MAX_SPAN_S
from shared.config import Config
from shared.errors import GatewayError

if TYPE_CHECKING:
    from core.app import CoreState

_DAY_S = 86400
# The raw-record panels' longest range (the page asks for at most this much of them): the
# walk newest-first stops far sooner in practice, this bounds it for an empty tenant.
MAX_RAW_SPAN_S = MAX_SPAN_S["hour"]  # 92 days
_RANGE = frozenset({"start", "end", "tenant"})
_PARAMS = {
    "whoami": frozenset(),
    "health": _RANGE | {"model", "provider"},
    "requests": _RANGE | {"limit", "before", *LOG_FILTERS},
    "budgets": frozenset({"tenant"}),
    "operations": frozenset(),
}
Panel = Callable[[Caller, Mapping[str, str]], Awaitable[Any]]


def _params(request: Request, allowed: frozenset[str]) -> dict[str, str]:
    """The panel's parameters: an unknown one, one given twice, an overlong one or a NUL is
    a 400 naming it (as for the usage API: a typo never widens what is shown)."""
    params: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in allowed:
            raise invalid(name[:64] or "?", "unknown parameter")
        if name in params:
            raise invalid(name, "given more than once")
        if len(value) > MAX_VALUE_CHARS or "\x00" in value:
            raise invalid(name, "too long or contains a NUL character")
        params[name] = value
    return params


def _scope(caller: Caller, params: Mapping[str, str], filters: dict[str, str]) -> Scope:
    now = time.time()
    end = parse_time(params["end"], "end") if "end" in params else now + 60
    start = parse_time(params["start"], "start") if "start" in params else end - _DAY_S
    if end <= start:
        raise invalid("end", "must be after start")
    if end - start > MAX_RAW_SPAN_S:
        raise invalid("end", f"a range spans at most {MAX_RAW_SPAN_S // _DAY_S} days here")
    tenant = scoped_tenant(None if caller.admin else caller.tenant, params.get("tenant"))
    return Scope(start, end, tenant, filters)


def _limit(value: str | None) -> int:
    if value is None:
        return 50
    if not (value.isascii() and value.isdigit() and 1 <= int(value) <= MAX_LOG_ROWS):
        raise invalid("limit", f"expected a whole number from 1 to {MAX_LOG_ROWS}")
    return int(value)


class DashboardApi:
    """The endpoint; reads the core's own state (CoreState) and the ledger store."""

    def __init__(self, state: CoreState, reads: RawReads | None) -> None:
        self._state = state
        self._config: Config = state.config
        self._reads = reads
        self._panels: dict[str, Panel] = {
            "whoami": self._whoami,
            "health": self._health,
            "requests": self._requests,
            "budgets": self._budgets,
            "operations": self._operations,
        }

    async def __call__(self, request: Request, caller: Caller, body: bytes) -> Response:
        name = request.path_params.get("panel", "")
        panel = self._panels.get(name)
        if panel is None:
            raise GatewayError(404, "no such dashboard panel", code="not_found")
        answer = await panel(caller, _params(request, _PARAMS[name]))
        return Response(
            orjson.dumps(answer),
            media_type="application/json",
            headers={"x-request-id": caller.request_id, "cache-control": "no-store"},
        )

    async def _whoami(self, caller: Caller, params: Mapping[str, str]) -> Any:
        return {
            "tenant": caller.tenant,
            "admin": caller.admin,
            "ledger": self._reads is not None,
            "trace_ids": HAS_TRACE_ID,
        }

    def _ledger(self) -> RawReads:
        if self._reads is None:
            raise GatewayError(
                404, "the usage ledger is disabled on this gateway", code="usage_off"
            )
        return self._reads

    async def _health(self, caller: Caller, params: Mapping[str, str]) -> Any:
        filters = {LOG_FILTERS[k]: v for k, v in params.items() if k in ("model", "provider")}
        return await self._guarded(self._ledger().health(_scope(caller, params, filters)))

    async def _requests(self, caller: Caller, params: Mapping[str, str]) -> Any:
        filters = {LOG_FILTERS[k]: v for k, v in params.items() if k in LOG_FILTERS}
        scope = _scope(caller, params, filters)
        if "before" in params:
            before = parse_time(params["before"], "before")
            scope = Scope(scope.start, min(scope.end, before), scope.tenant, scope.filters)
        limit = _limit(params.get("limit"))
        rows = await self._guarded(self._ledger().log(scope, limit))
        return {"data": rows, "has_more": len(rows) == limit, "trace_ids": HAS_TRACE_ID}

    async def _guarded(self, read: Awaitable[Any]) -> Any:
        """A ledger that fails or is slower than its write timeout is a 503, as for usage."""
        try:
            async with asyncio.timeout(self._config.ledger.write_timeout_s):
                return await read
        except GatewayError:
            raise
        except (Exception, TimeoutError):
            raise GatewayError(
                503, "the usage ledger is unavailable; retry shortly", code="ledger_unavailable"
            ) from None

    async def _budgets(self, caller: Caller, params: Mapping[str, str]) -> Any:
        tenant = scoped_tenant(None if caller.admin else caller.tenant, params.get("tenant"))
        levels = self._state.budget_settler.levels
        answer: dict[str, Any] = {"budgets": live.budgets(self._config, levels, tenant)}
        if not caller.admin:
            answer["limits"] = live.limits(self._config, caller.tenant, caller.tier)
        return answer

    async def _operations(self, caller: Caller, params: Mapping[str, str]) -> Any:
        if not caller.admin:
            raise GatewayError(
                403, "the operations panel needs an operator token", code="operator_only"
            )
        state = self._state
        return live.operations(state.breakers, state.dispatcher.keys, self._config.providers)
