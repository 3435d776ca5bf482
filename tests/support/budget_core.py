"""A real core with budgets priced by the test Pricing (tests/support/flat_pricing.py), run by
the test stack through the same launcher as the real core (`core_app=BUDGET_CORE`), until the
shipped price catalogue is wired in at start-up."""

from __future__ import annotations

from starlette.applications import Starlette

from core.app import create_app as create_core_app
from shared.config import Config
from tests.support.flat_pricing import FlatPricing

BUDGET_CORE = "tests.support.budget_core:create_app"


def create_app(config: Config) -> Starlette:
    return create_core_app(config, FlatPricing())
