"""Which of a route's targets can count a request's tokens, in route order.

A target counts when its provider has a counting API (core.providers.adapters.counting:
Anthropic, Gemini, Bedrock for the models it counts) or is the built-in mock (which counts
the way its own usage reports prompts). When no target of the route can, the gateway's
estimate answers (`x-interlock-usage-estimated: true`), so a client such as Claude Code that
sizes its context with counts still gets one for an OpenAI-compatible route. Targets whose
translation the request cannot take (a Gemini target and a content block only Anthropic
reads) are left out while an Anthropic target can still count; alone, their 400 names the
field.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.api.count_tokens.request import CountRequest
from core.providers.adapters.anthropic.counting import ANTHROPIC_COUNTER
from core.providers.adapters.base import Target
from core.providers.adapters.bedrock.counting import BEDROCK_COUNTER
from core.providers.adapters.counting import Counter
from core.providers.adapters.gemini.counting import GEMINI_COUNTER
from core.routing.registry import Route
from shared.errors import GatewayError

MOCK_KIND = "mock"
COUNTERS: dict[str, Counter] = {
    "anthropic": ANTHROPIC_COUNTER,
    "gemini": GEMINI_COUNTER,
    "bedrock": BEDROCK_COUNTER,
}
# The kinds whose counters read the canonical translation (Anthropic's reads the client's own).
_TRANSLATED = frozenset(("gemini", "bedrock", MOCK_KIND))


@dataclass(frozen=True, slots=True)
class CountStep:
    """One target to ask; `counter` None: counted by the gateway (the mock's own rule, or the
    estimate when `estimated`)."""

    target: Target
    counter: Counter | None
    estimated: bool = False
    dropped: tuple[str, ...] = ()


def _step(target: Target) -> CountStep | None:
    kind = target.provider.kind
    if kind == MOCK_KIND:
        return CountStep(target, None)
    counter = COUNTERS.get(kind)
    if counter is None or counter.problem(target) is not None:
        return None
    return CountStep(target, counter)


def plan_count(route: Route, request: CountRequest) -> list[CountStep]:
    steps = [step for c in route.candidates if (step := _step(c.target)) is not None]
    if not steps:
        return [CountStep(route.candidates[0].target, None, estimated=True)]
    if any(s.target.provider.kind in _TRANSLATED for s in steps):
        try:
            request.translate()
        except GatewayError:
            direct = [s for s in steps if s.target.provider.kind not in _TRANSLATED]
            if not direct:
                raise
            return direct
    return steps
