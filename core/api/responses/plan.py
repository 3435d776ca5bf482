"""Planning a Responses request over a route that may mix OpenAI and other targets.

OpenAI itself (an `openai` provider with the `openai` preset) and Azure's v1 API speak the
Responses API: they get the client's request by passthrough (passthrough.py), so built-in
tools, file inputs and `include: ["reasoning.encrypted_content"]` work there. Every other
target gets the canonical translation through chat planning (capabilities, strict/lenient
params), as the Messages API does for its non-Anthropic targets; a request that only OpenAI can
serve (request.refusal) skips them. One list in route order, one failover sequence: a
passthrough failure can fall back to a translated target and the other way round.

`reasoning.effort` is a hint, as Messages' `thinking` is: sent where the target takes
`reasoning_effort`, else dropped and listed in x-interlock-dropped-params. A planning refusal
names the Responses field (`max_output_tokens`, `text.format`, `input`), not the chat one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.api.responses.request import renamed
from core.providers.adapters.azure import ADAPTER as AZURE
from core.providers.adapters.base import JSON, Target
from core.providers.adapters.openai_compat import ADAPTER as OPENAI
from core.routing.planning import Attempt, plan_chat
from core.routing.registry import Route
from shared.errors import GatewayError

if TYPE_CHECKING:
    from core.api.responses.handler import ResponsesRequest

_HINT = "reasoning_effort"


@dataclass(slots=True)
class Direct:
    """Passthrough to a target that speaks the Responses API (run like any attempt)."""

    target: Target
    dropped: tuple[str, ...] = ()


Step = Direct | Attempt


def responses_url(target: Target) -> str | None:
    """The target's Responses endpoint, or None when it does not speak the API."""
    provider = target.provider
    if provider.kind == "openai":
        settings = OPENAI.settings(provider)
        if settings.preset.name != "openai":
            return None
        return settings.url.removesuffix("/chat/completions") + "/responses"
    if provider.kind == "azure" and AZURE.options(provider).api_version == "v1":
        return f"{provider.base_url}/openai/v1/responses"
    return None


def _with_hint(attempt: Attempt, effort: object, route: Route) -> Attempt:
    caps = next(c.capabilities for c in route.candidates if c.target is attempt.target)
    if caps.params is None or _HINT in caps.params:
        payload = {**attempt.payload, _HINT: effort}
        return Attempt(
            attempt.target, attempt.upstream, payload, attempt.dropped, attempt.inline_images
        )
    dropped = (*attempt.dropped, "reasoning.effort")
    return Attempt(
        attempt.target, attempt.upstream, attempt.payload, dropped, attempt.inline_images
    )


def _translated(route: Route, request: ResponsesRequest, mixed: bool) -> dict[int, Attempt]:
    """id(target) -> attempt for every translated target able to serve the request."""
    if request.refusal is not None:
        raise request.refusal
    others = tuple(c for c in route.candidates if responses_url(c.target) is None)
    sub = Route(route.name, others, route.strict_params, route.unrestricted) if mixed else route
    payload: JSON = request.payload
    effort = payload.get(_HINT)
    if effort is not None:
        payload = {k: v for k, v in payload.items() if k != _HINT}
    try:
        attempts = plan_chat(sub, payload)
    except GatewayError as error:
        raise renamed(error) from None
    if effort is not None:
        attempts = [_with_hint(attempt, effort, route) for attempt in attempts]
    return {id(attempt.target): attempt for attempt in attempts}


def plan_responses(route: Route, request: ResponsesRequest) -> list[Step]:
    """Steps in route order; raises the first reason no target can serve the request."""
    native = [responses_url(c.target) is not None for c in route.candidates]
    translated: dict[int, Attempt] = {}
    if not all(native):
        try:
            translated = _translated(route, request, any(native))
        except GatewayError:
            if not any(native):
                raise
    steps: list[Step] = []
    for candidate, direct in zip(route.candidates, native, strict=True):
        if direct:
            steps.append(Direct(candidate.target))
        elif (attempt := translated.get(id(candidate.target))) is not None:
            steps.append(attempt)
    return steps
