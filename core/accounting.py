"""Usage accounting: one structured line per request, never with prompt or completion text."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from core.adapters.base import Target
from core.identity import Caller
from core.limits import Admission

log = logging.getLogger("interlock.usage")


def record(
    caller: Caller,
    requested_model: str,
    target: Target | None,
    usage: dict[str, Any] | None,
    outcome: str,
    started: float,
    attempts: int,
    admission: Admission | None = None,
) -> None:
    """Every request ends here exactly once: settle its token reservation, then log it."""
    if admission is not None:
        total = (usage or {}).get("total_tokens")
        admission.settle(total if isinstance(total, int) else 0)
    if not log.isEnabledFor(logging.INFO):
        return
    line = {
        "request_id": caller.request_id,
        "tenant": caller.tenant,
        "tier": caller.tier,
        "model": requested_model,
        "provider": target.provider.name if target else None,
        "upstream_model": target.model if target else None,
        "outcome": outcome,
        "attempts": attempts,
        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        "prompt_tokens": (usage or {}).get("prompt_tokens"),
        "completion_tokens": (usage or {}).get("completion_tokens"),
    }
    log.info(orjson.dumps(line).decode())
