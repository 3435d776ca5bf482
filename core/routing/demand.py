"""The Demand (core.routing.signals) of one request, read from its payload at plan time.

The plan stage asks for it only for routes whose strategy prices candidates (`cost`,
`score`, with two targets or more): the others need no estimate, so they pay nothing for it.
The estimate is the one budgets reserve (core.budgets.ask): the prompt estimate, and
`max_completion_tokens` / `max_tokens` times `n` as the output cap (each target's own output
limit is applied when it is priced).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.routing.ordering import PRICED
from core.routing.signals import Demand, Holder
from core.wire.tokens import MAX_CHOICES, MAX_OUTPUT_TOKENS

__all__ = ["PRICED", "demand_of"]


def demand_of(
    payload: dict[str, Any],
    streaming: bool,
    ceiling_s: float | None,
    prompt: Callable[[], int],
    holder: Holder | None = None,
) -> Demand:
    """`prompt`: the request's input estimate (Exchange.prompt_tokens: computed once per
    request). Always estimates (an explain command prices every route); the plan stage calls
    it only for routes whose strategy is in PRICED. `holder`: who holds the request's cached
    prefix (core.cache.affinity), looked up by the plan stage."""
    if "messages" not in payload:  # embeddings: the input is all they use
        return Demand(prompt(), 0, streaming, ceiling_s, holder)
    cap = payload.get("max_completion_tokens") or payload.get("max_tokens")
    limit = _count(cap, MAX_OUTPUT_TOKENS)
    if limit is not None:
        limit *= _count(payload.get("n"), MAX_CHOICES) or 1
    return Demand(prompt(), limit, streaming, ceiling_s, holder)


def _count(value: object, highest: int) -> int | None:
    if type(value) is not int or value < 1:
        return None
    return min(value, highest)
