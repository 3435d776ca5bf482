"""Planning a Messages request over a route that may mix Anthropic and other targets.

Anthropic targets are served by passthrough and always qualify. The others need the request
translated, then go through dispatch.plan (capabilities, strict/lenient params) like chat, plus
the Anthropic-only fields: `top_k` only where declared, the `thinking` hint only where it can be
taken, untranslatable fields per the route's strict/lenient rule. Consecutive translated targets
form one group, so dispatch fails over inside it and fetches remote images once per request.
"""

from __future__ import annotations

from dataclasses import dataclass

from core import dispatch
from core.adapters.base import JSON, Capabilities, Target
from core.dispatch import Attempt
from core.messages.request import Translated, to_canonical
from core.routing import Route
from shared.errors import GatewayError

ANTHROPIC_KIND = "anthropic"


@dataclass(slots=True)
class Direct:
    """Passthrough to an Anthropic target (run by the Dispatcher like any attempt)."""

    target: Target
    dropped: tuple[str, ...] = ()


@dataclass(slots=True)
class Group:
    """Consecutive translated targets, handed to dispatch together."""

    attempts: list[Attempt]


Step = Direct | Group


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


def _translated_attempts(route: Route, payload: JSON, mixed: bool) -> dict[int, Attempt]:
    """id(target) -> attempt for every translated target able to serve the request."""
    others = tuple(c for c in route.candidates if c.target.provider.kind != ANTHROPIC_KIND)
    translated = to_canonical(payload)
    sub = Route(route.name, others, route.strict_params, route.unrestricted) if mixed else route
    caps = {id(c.target): c.capabilities for c in others}
    usable: dict[int, Attempt] = {}
    problem: GatewayError | None = None
    for attempt in dispatch.plan(sub, translated.canonical):
        adjusted = _adjust(attempt, caps[id(attempt.target)], translated, route.strict_params)
        if isinstance(adjusted, GatewayError):
            problem = problem or adjusted
        else:
            usable[id(adjusted.target)] = adjusted
    if not usable and problem is not None:
        raise problem
    return usable


def plan(route: Route, payload: JSON) -> list[Step]:
    """Steps in route order; raises the first reason no target can serve the request."""
    kinds = [c.target.provider.kind == ANTHROPIC_KIND for c in route.candidates]
    translated: dict[int, Attempt] = {}
    if not all(kinds):
        try:
            translated = _translated_attempts(route, payload, any(kinds))
        except GatewayError:
            if not any(kinds):
                raise
            # Anthropic targets can still serve what the others cannot.
    steps: list[Step] = []
    for candidate, is_anthropic in zip(route.candidates, kinds, strict=True):
        if is_anthropic:
            steps.append(Direct(candidate.target))
            continue
        attempt = translated.get(id(candidate.target))
        if attempt is None:
            continue
        last = steps[-1] if steps else None
        if isinstance(last, Group):
            last.attempts.append(attempt)
        else:
            steps.append(Group([attempt]))
    return steps
