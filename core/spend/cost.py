"""What a request cost, and the pricing seam every stage that needs money goes through.

Money is an integer number of micro-dollars (1e-6 USD) everywhere: no floats in money.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from core.providers.adapters.base import Target
from core.spend.usage import UsageSplit


@dataclass(frozen=True, slots=True)
class Cost:
    micros: int  # what the usage cost, in micro-dollars
    price_version: str | None  # the catalogue entry used (e.g. "openai/gpt-4o@2025-06-01")
    unpriced: bool = False  # the model has no price: `micros` is the operator's fixed charge
    estimated: bool = False  # priced from estimated usage

    @property
    def dollars(self) -> str:
        """For headers and reports: exact decimal, never a float."""
        return f"{self.micros // 1_000_000}.{self.micros % 1_000_000:06d}"


class Pricing(Protocol):
    """Built once at start-up from the shipped catalogue and the operator's overrides."""

    def cost(self, target: Target, usage: UsageSplit) -> Cost:
        """The cost of `usage` served by `target`."""
        ...

    def estimate(
        self,
        target: Target,
        input_tokens: int,
        max_output_tokens: int | None,
        units: UsageSplit | None = None,
    ) -> Cost:
        """An upper estimate before the call (budget reservations): `input_tokens` uncached,
        plus the smaller of `max_output_tokens` and the model's real output limit, plus the
        media `units` the request asks for (core.spend.images.requested_images), priced by
        quality and size even where the model bills tokens (its per-image price is the
        provider's own estimate of them)."""
        ...

    def refuses(self, target: Target) -> bool:
        """True when the target has no price and the operator chose to refuse unpriced models."""
        ...
