"""The Demand (core.routing.signals) of one request, read from its payload at plan time.

Tokens are estimated only for the strategies that price candidates (`cost`, `score`): the
others need no estimate, so they pay nothing for it. The estimate is the one budgets reserve
(core.budgets.ask): the prompt estimate, and `max_completion_tokens` / `max_tokens` times `n`
as the output cap (each target's own output limit is applied when it is priced).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.limits.admission import prompt_estimate
from core.routing.registry import Route
from core.routing.signals import Demand
from core.wire.tokens import MAX_CHOICES, MAX_OUTPUT_TOKENS

PRICED = frozenset({"cost", "score"})


def demand_of(
    route: Route,
    payload: dict[str, Any],
    streaming: bool,
    ceiling_s: float | None,
    estimate: Callable[[], int],
) -> Demand:
    """`estimate`: the API's own token estimate, for payloads without messages (embeddings)."""
    if route.strategy not in PRICED or len(route.candidates) < 2:
        return Demand(0, None, streaming, ceiling_s)
    if "messages" not in payload:
        return Demand(estimate(), 0, streaming, ceiling_s)
    cap = payload.get("max_completion_tokens") or payload.get("max_tokens")
    limit = _count(cap, MAX_OUTPUT_TOKENS)
    if limit is not None:
        limit *= _count(payload.get("n"), MAX_CHOICES) or 1
    return Demand(prompt_estimate(payload), limit, streaming, ceiling_s)


def _count(value: object, highest: int) -> int | None:
    if type(value) is not int or value < 1:
        return None
    return min(value, highest)
