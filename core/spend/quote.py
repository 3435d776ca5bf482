"""What a request cost, told to the client: the names on the wire.

A complete answer of every API carries `x-interlock-cost` (decimal dollars, `0.000123`), set
once by the encode stage (core.pipeline.stages.Encode) for all of them. A stream carries the
same amount in its final usage, as `usage.interlock_cost` (OpenAI's usage chunk, Anthropic's
message_delta), when usage is sent: both official SDKs keep unknown usage fields (their models
allow extras), and the prefixed name cannot be mistaken for a host's own `cost` (OpenRouter's is a
number in credits). The amount is the serving target's price of the usage the answer reports;
`estimated` costs (a provider that reports no usage) say so in `x-interlock-cost-estimated`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.spend.cost import Cost

JSON = dict[str, Any]

COST_HEADER = "x-interlock-cost"
COST_ESTIMATED_HEADER = "x-interlock-cost-estimated"
# A usage the gateway estimated (the provider reported none, or could not count).
USAGE_ESTIMATED_HEADER = "x-interlock-usage-estimated"
COST_FIELD = "interlock_cost"

# Prices a canonical usage for the request's serving target (Exchange.cost_of).
CostOf = Callable[[dict[str, Any] | None], Cost | None]


def cost_headers(cost: Cost | None) -> dict[str, str]:
    if cost is None:
        return {}
    headers = {COST_HEADER: cost.dollars}
    if cost.estimated:
        headers[COST_ESTIMATED_HEADER] = "true"
    return headers


def with_cost(shown: dict[str, Any], usage: dict[str, Any], cost_of: CostOf | None) -> JSON:
    """A stream's final usage as the client reads it (`shown`, in its API's shape) with the
    cost of the canonical `usage` it shows."""
    cost = cost_of(usage) if cost_of is not None else None
    return shown if cost is None else {**shown, COST_FIELD: cost.dollars}
