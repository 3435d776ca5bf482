"""Usage accounting: one structured line per request, never with prompt or completion text.

Every request ends here exactly once, which is also where its token reservations (the
tenant's and the provider key's) are settled against actual usage.

`outcome` on the line: `ok`; `cut:<failure class>` (a stream that failed after its first byte);
`cancelled` (the client left: before the answer started, nothing was used and nothing is billed;
during a stream, what was streamed is, from the upstream's usage or an estimate); or the failure
class of a request no target served (`timeout` for the request's deadline, too).
"""

from __future__ import annotations

import functools
import hashlib
import time
from typing import TYPE_CHECKING, Any

from core.api.identity import Caller
from core.ledger.record import LedgerRecord
from core.limits.tenant import Admission
from core.observe.cache_writes import CACHE_WRITES
from core.observe.usagelog import USAGE_LOG, bounded_name
from core.providers.adapters.base import ProviderError, Target
from core.spend.cost import Cost, Pricing
from core.spend.usage import UsageSplit
from shared.errors import UpstreamTarget

# The usage line's outcome for a request whose client left (core.api.relay writes the same).
CANCELLED = "cancelled"

if TYPE_CHECKING:
    from core.resilience.dispatch import Outcome


def _total(usage: dict[str, Any] | None) -> int:
    total = (usage or {}).get("total_tokens")
    return total if isinstance(total, int) else 0


def record(
    caller: Caller,
    requested_model: str,
    outcome: Outcome,
    usage: dict[str, Any] | None,
    status: str,
    started: float,
    admission: Admission | None = None,
    priced: Priced | None = None,
) -> None:
    """`priced`: the usage split and cost account computed once (the budgets settle at it)."""
    total = _total(usage)
    if priced is not None and isinstance(outcome.target, Target):
        split = priced[0]
        written = split.cache_write_5m + split.cache_write_1h
        CACHE_WRITES.observe(outcome.target.health_label, split.cache_read, written)
    if admission is not None:
        admission.settle(total)
    if outcome.lease is not None:
        outcome.lease.settle(total)
    if outcome.budget is not None:  # the budget hold, settled at the actual cost
        if usage is None or priced is None:
            outcome.budget.settle(usage)
        else:
            split, cost = priced
            outcome.budget.settle_cost(cost.micros, split.input_total + split.output)
    _log(
        caller,
        requested_model,
        outcome.target,
        usage,
        status,
        started,
        outcome.attempts,
        outcome.failovers,
    )


def record_failure(
    caller: Caller,
    requested_model: str,
    error: ProviderError,
    started: float,
    admission: Admission | None,
) -> None:
    if admission is not None:
        admission.settle(0)
    _log(
        caller,
        requested_model,
        error.target,
        None,
        error.failure_class,
        started,
        error.attempts,
        None,
    )


def record_cancelled(
    caller: Caller, requested_model: str, started: float, admission: Admission | None
) -> None:
    """The client left before any answer: the upstream work was cancelled, nothing billed."""
    if admission is not None:
        admission.settle(0)
    _log(caller, requested_model, None, None, CANCELLED, started, None, None)


def record_cache_hit(
    caller: Caller,
    requested_model: str,
    started: float,
    saved: dict[str, Any] | None,
    outcome: str = "cache_hit",
) -> None:
    """Answered by the response cache (or, `outcome` coalesced, by another request's upstream
    call): nothing used, nothing billed. The usage line's tokens are the ones it saved (the
    outcome says they were not used)."""
    _log(caller, requested_model, None, saved, outcome, started, 0, 0)


def _log(
    caller: Caller,
    requested_model: str,
    target: UpstreamTarget | None,
    usage: dict[str, Any] | None,
    status: str,
    started: float,
    attempts: int | None,
    failovers: int | None,
) -> None:
    if not USAGE_LOG.enabled:
        return
    line = {
        "request_id": caller.request_id,
        "trace_id": caller.trace_id,
        "tenant": caller.tenant,
        "tier": caller.tier,
        "model": bounded_name(requested_model),
        "provider": target.provider.name if target else None,
        "upstream_model": bounded_name(target.model) if target else None,
        "outcome": status,
        "attempts": attempts,
        "failovers": failovers,
        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        "prompt_tokens": (usage or {}).get("prompt_tokens"),
        "completion_tokens": (usage or {}).get("completion_tokens"),
        "usage_estimated": bool((usage or {}).get("estimated")),
    }
    USAGE_LOG.write(line)


def key_id(target: UpstreamTarget | None) -> str | None:
    """A stable id of the provider key that served (a short digest, never the key): which key
    was billed, for reconciling against a provider's invoice."""
    key = getattr(target, "api_key", None)
    if not key:
        return None
    return _key_digest(key.id_material())


@functools.lru_cache(maxsize=1024)  # a handful of keys, hashed once each, not per request
def _key_digest(material: str) -> str:
    return "k_" + hashlib.sha256(material.encode()).hexdigest()[:16]


# A request's usage split and what it cost: computed once at account, for the ledger and budgets.
Priced = tuple[UsageSplit, Cost]


def cost_of(pricing: Pricing | None, target: UpstreamTarget | None, usage: UsageSplit) -> Cost:
    """What the request cost; never a silent $0: without a pricing (or a target that can be
    priced) the record says `unpriced`."""
    if pricing is None:
        return Cost(0, None, unpriced=True)
    if not isinstance(target, Target):
        return Cost(0, None, unpriced=usage.input_total + usage.output > 0)
    return pricing.cost(target, usage)


def ledger_record(
    caller: Caller,
    api: str,
    requested_model: str,
    served: tuple[UpstreamTarget | None, int],
    status: str,
    timing: tuple[float, float | None],
    priced: Priced,
    saved: UsageSplit | None = None,
) -> LedgerRecord:
    """The request's one ledger record. `served`: the target (None when none answered) and
    the attempts made; `timing`: when the request started and, for a stream, when its first
    chunk was in hand (perf_counter seconds); `priced`: the usage split and its cost;
    `saved`: what a response-cache hit saved (kept apart from the billed usage)."""
    target, attempts = served
    started, first_chunk = timing
    split, cost = priced
    return LedgerRecord(
        request_id=caller.request_id,
        ts=time.time(),
        tenant=caller.tenant,
        tags=caller.tags,
        api=api,
        requested_model=bounded_name(requested_model) or "",
        served_model=bounded_name(target.model) if target else None,
        provider=target.provider.name if target else None,
        key_id=key_id(target),
        usage=split,
        cost_micros=cost.micros,
        price_version=cost.price_version,
        unpriced=cost.unpriced,
        outcome=status,
        attempts=attempts,
        latency_ms=round((time.perf_counter() - started) * 1000, 2),
        ttft_ms=round((first_chunk - started) * 1000, 2) if first_chunk is not None else None,
        saved_input=saved.input_total if saved is not None else 0,
        saved_output=saved.output if saved is not None else 0,
        trace_id=caller.trace_id,
    )
