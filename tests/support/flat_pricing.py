"""A small deterministic Pricing for budget tests (the real catalogue is core.spend's
`prices` work): micro-dollars per token by target model id, and each model's output limit."""

from __future__ import annotations

from core.providers.adapters.base import Target
from core.spend.cost import Cost
from core.spend.usage import UsageSplit

# model id -> (input micros per token, output micros per token, output limit in tokens)
PRICES: dict[str, tuple[int, int, int]] = {
    "mock-pricey": (100, 400, 64),
    "mock-pressured": (100, 400, 64),
    "mock-cheap": (10, 40, 64),
    "mock-1": (1, 4, 4096),
    "dead-cheap": (10, 40, 64),
}
DEFAULT = (1, 1, 4096)
IMAGE_MICROS = 40_000  # every generated image, whatever its model, quality or size


class FlatPricing:
    def cost(self, target: Target, usage: UsageSplit) -> Cost:
        per_in, per_out, _ = PRICES.get(target.model, DEFAULT)
        micros = usage.input_total * per_in + usage.output * per_out
        return Cost(micros, f"test/{target.model}", estimated=usage.estimated)

    def estimate(
        self,
        target: Target,
        input_tokens: int,
        max_output_tokens: int | None,
        units: UsageSplit | None = None,
    ) -> Cost:
        per_in, per_out, limit = PRICES.get(target.model, DEFAULT)
        output = limit if max_output_tokens is None else min(max_output_tokens, limit)
        micros = input_tokens * per_in + output * per_out
        micros += IMAGE_MICROS * units.images if units is not None else 0
        return Cost(micros, f"test/{target.model}", False, True)

    def refuses(self, target: Target) -> bool:
        return False
