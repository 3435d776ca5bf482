"""Planning a Messages request over a route that may mix Anthropic and other targets.

Anthropic targets are served by passthrough and always qualify. The others need the request
translated, then go through chat planning (capabilities, strict/lenient params), plus the
Anthropic-only fields: `top_k` only where declared, the `thinking` hint only where it can be
taken, untranslatable fields per the route's strict/lenient rule. The result is one list in
route order (the Dispatcher orders the route by its strategy first) that the Dispatcher runs as
one failover sequence: a passthrough failure can fall back to a translated target and the other
way round, and remote images are fetched once per request.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.api.messages.request import Translated, to_canonical
from core.providers.adapters.base import JSON, Capabilities, Target
from core.routing.planning import Attempt, plan_chat
from core.routing.registry import Route
from shared.errors import GatewayError

ANTHROPIC_KIND = "anthropic"


@dataclass(slots=True)
class Direct:
    """Passthrough to an Anthropic target (run by the Dispatcher like any attempt). `payload`:
    the client's request it sends, from which the x-interlock-cache-dropped header is
    computed as for translated attempts (core.pipeline.prompt_cache.dropped_headers)."""

    target: Target
    dropped: tuple[str, ...] = ()
    payload: JSON | None = None


# A passthrough target, or a translated one with its canonical payload.
Step = Direct | Attempt


def _unsupported(label: str, field: str) -> GatewayError:
    return GatewayError(
        400,
        f"{label} does not support the parameter '{field}'",
        param=field,
        code="unsupported_parameter",
    )


def _adjust(
    attempt: Attempt, caps: Capabilities, translated: Translated, strict: bool
) -> Attempt | GatewayError:
    extra: JSON = {}
    dropped = list(attempt.dropped)
    for key, value in translated.optional.items():
        if caps.params is not None and key in caps.params:
            extra[key] = value
        elif strict:
            return _unsupported(attempt.target.label, key)
        else:
            dropped.append(key)
    for field in translated.unsupported:
        if strict:
            return _unsupported(attempt.target.label, field)
        dropped.append(field)
    for key, (field, value) in translated.hints.items():
        if caps.params is None or key in caps.params:
            extra[key] = value
        else:
            dropped.append(field)
    if not extra and len(dropped) == len(attempt.dropped):
        return attempt
    payload = {**attempt.payload, **extra} if extra else attempt.payload
    return Attempt(attempt.target, attempt.upstream, payload, tuple(dropped), attempt.inline_images)


def _translated_attempts(
    route: Route, payload: JSON, mixed: bool, cache_key: str | None = None
) -> dict[int, Attempt]:
    """id(target) -> attempt for every translated target able to serve the request."""
    others = tuple(c for c in route.candidates if c.target.provider.kind != ANTHROPIC_KIND)
    translated = to_canonical(payload)
    if cache_key is not None:  # adapters of hosts that do not take it leave it out
        translated.canonical["prompt_cache_key"] = cache_key
    sub = Route(route.name, others, route.strict_params, route.unrestricted) if mixed else route
    caps = {id(c.target): c.capabilities for c in others}
    usable: dict[int, Attempt] = {}
    problem: GatewayError | None = None
    for attempt in plan_chat(sub, translated.canonical):
        adjusted = _adjust(attempt, caps[id(attempt.target)], translated, route.strict_params)
        if isinstance(adjusted, GatewayError):
            problem = problem or adjusted
        else:
            usable[id(adjusted.target)] = adjusted
    if not usable and problem is not None:
        raise problem
    return usable


def plan_messages(route: Route, payload: JSON, cache_key: str | None = None) -> list[Step]:
    """Steps in route order; raises the first reason no target can serve the request.
    `cache_key`: the tenant's prompt_cache_key for translated targets
    (core.pipeline.prompt_cache)."""
    kinds = [c.target.provider.kind == ANTHROPIC_KIND for c in route.candidates]
    translated: dict[int, Attempt] = {}
    if not all(kinds):
        try:
            translated = _translated_attempts(route, payload, any(kinds), cache_key)
        except GatewayError:
            if not any(kinds):
                raise
            # Anthropic targets can still serve what the others cannot.
    steps: list[Step] = []
    for candidate, is_anthropic in zip(route.candidates, kinds, strict=True):
        if is_anthropic:
            steps.append(Direct(candidate.target, payload=payload))
        elif (attempt := translated.get(id(candidate.target))) is not None:
            steps.append(attempt)
    return steps
