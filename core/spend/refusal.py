"""Unpriced models the operator refuses (`prices.unpriced: refuse`): left out at planning.

A refused target is skipped like one that cannot serve the request, so a route whose first
target has no price still fails over to a priced one. When every planned target is refused the
request is a 403 `model_unpriced`: refusing is the operator's policy about this model, like a
token that may not use it (403 `model_not_allowed`), not a fault of the request (400) nor of the
gateway (a 5xx, which SDKs would retry for nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from core.resilience.dispatch import Routable
from core.spend.cost import Pricing
from shared.errors import GatewayError

S = TypeVar("S", bound=Routable)


def priced_steps(steps: Sequence[S], pricing: Pricing) -> list[S]:
    kept = [step for step in steps if not pricing.refuses(step.target)]
    if steps and not kept:
        raise GatewayError(
            403,
            "this model has no price and the gateway is configured to refuse unpriced models",
            param="model",
            code="model_unpriced",
        )
    return kept
