"""Which of a route's targets can count a request's tokens, in route order.

A target counts when its provider has a counting API (core.providers.adapters.counting:
Anthropic, Gemini, Bedrock for the models it counts, and OpenAI's Responses API for a Responses
request) or is the built-in mock (which counts the way its own usage reports prompts). Each API
says which counter serves a target and whether that counter reads the canonical translation or
the client's own request (`CounterFor`). When no target of the route can count, the gateway's
estimate answers (`x-interlock-usage-estimated: true`), so a client such as Claude Code that
sizes its context with counts still gets one for an OpenAI-compatible route. Targets whose
translation the request cannot take (a Gemini target and a content block only Anthropic
reads) are left out while a target reading the client's own request can still count; alone,
their 400 names the field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from core.providers.adapters.anthropic.counting import ANTHROPIC_COUNTER
from core.providers.adapters.base import JSON, Target
from core.providers.adapters.bedrock.counting import BEDROCK_COUNTER
from core.providers.adapters.counting import Counter
from core.providers.adapters.gemini.counting import GEMINI_COUNTER
from core.routing.registry import Route
from shared.errors import GatewayError

MOCK_KIND = "mock"
# The counters that read the canonical translation, by provider kind.
TRANSLATED: dict[str, Counter] = {"gemini": GEMINI_COUNTER, "bedrock": BEDROCK_COUNTER}
# (counter, whether it reads the canonical translation) for a target, or None: it cannot.
CounterFor = Callable[[Target], tuple[Counter, bool] | None]


class Countable(Protocol):
    def translate(self) -> JSON:
        """The canonical form; a GatewayError when only the client's own API can take it."""
        ...


@dataclass(frozen=True, slots=True)
class CountStep:
    """One target to ask; `counter` None: counted by the gateway (the mock's own rule, or the
    estimate when `estimated`)."""

    target: Target
    counter: Counter | None
    estimated: bool = False
    translated: bool = True  # reads the canonical translation
    dropped: tuple[str, ...] = ()


def messages_counter(target: Target) -> tuple[Counter, bool] | None:
    """A Messages request: Anthropic is sent it as it is, Gemini and Bedrock translated."""
    kind = target.provider.kind
    if kind == "anthropic":
        return ANTHROPIC_COUNTER, False
    counter = TRANSLATED.get(kind)
    return None if counter is None else (counter, True)


def _step(target: Target, counter_for: CounterFor) -> CountStep | None:
    if target.provider.kind == MOCK_KIND:
        return CountStep(target, None)
    found = counter_for(target)
    if found is None or found[0].problem(target) is not None:
        return None
    return CountStep(target, found[0], translated=found[1])


def plan_count(route: Route, request: Countable, counter_for: CounterFor) -> list[CountStep]:
    steps = [step for c in route.candidates if (step := _step(c.target, counter_for)) is not None]
    if not steps:
        return [CountStep(route.candidates[0].target, None, estimated=True)]
    if any(step.translated for step in steps):
        try:
            request.translate()
        except GatewayError:
            own = [step for step in steps if not step.translated]
            if not own:
                raise
            return own
    return steps
