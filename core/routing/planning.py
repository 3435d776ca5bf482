"""Chat planning: which of a route's targets can serve this request, with which payload.

A target that cannot serve the request (streaming, tools, images, a response_format, n, or a
parameter in strict mode) is skipped; in lenient mode unsupported params are dropped from that
target's payload and reported.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core.providers.adapters.base import JSON, Capabilities, Target
from core.providers.upstream import Upstream
from core.routing.registry import Candidate, Route
from core.wire.tokens import estimate_messages
from shared.errors import GatewayError

# Always understood by the gateway itself, whatever the target (prompt_cache_key: set per tenant
# by core.pipeline.prompt_cache, withheld by the adapters of hosts that do not take it).
GATEWAY_PARAMS = frozenset({"model", "messages", "stream", "stream_options", "prompt_cache_key"})


@dataclass(slots=True)
class Attempt:
    target: Target
    upstream: Upstream
    payload: JSON
    dropped: tuple[str, ...]
    # The target needs image bytes: remote image URLs are fetched and inlined before the call.
    inline_images: bool = False


# Turns remote image URLs into data: URLs (core.images.fetcher.ImageFetcher.inline).
ImageInliner = Callable[[JSON], Awaitable[JSON]]


def _uses_images(payload: JSON) -> bool:
    for message in payload.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") == "image_url":
                    return True
    return False


def _unmet_feature(caps: Capabilities, payload: JSON, images: bool) -> str | None:
    """The first feature the request needs that the target lacks, as the param to name."""
    if payload.get("stream") and not caps.stream:
        return "stream"
    if payload.get("tools") and not caps.tools:
        return "tools"
    n = payload.get("n")
    if caps.max_n is not None and isinstance(n, int) and n > caps.max_n:
        return "n"
    if images and not caps.vision:
        return "messages"
    format_type = (payload.get("response_format") or {}).get("type")
    if format_type == "json_schema" and not caps.json_schema:
        return "response_format"
    if format_type == "json_object" and not caps.json_object:
        return "response_format"
    return None


def plan_chat(route: Route, payload: JSON) -> list[Attempt]:
    """Targets able to serve this request, in route order (the Dispatcher orders the route
    by its strategy first), each with its payload variant."""
    if route.unrestricted:
        return [Attempt(c.target, c.upstream, payload, ()) for c in route.candidates]
    images = _uses_images(payload)
    # Estimated only when a target declares a context limit: a prompt that cannot fit goes
    # straight to a larger-context target instead of failing there first.
    prompt = (
        estimate_messages(payload.get("messages") or [])
        if any(c.capabilities.max_context for c in route.candidates)
        else 0
    )
    attempts: list[Attempt] = []
    first_problem: tuple[str, str] | None = None
    for candidate in route.candidates:
        limit = candidate.capabilities.max_context
        if limit and prompt > limit:
            first_problem = first_problem or (
                "messages",
                f"{candidate.target.label} cannot fit a prompt of about {prompt} tokens "
                f"(context {limit})",
            )
            continue
        problem = _check(candidate, payload, images, route.strict_params)
        if isinstance(problem, tuple):
            first_problem = first_problem or problem
            continue
        attempts.append(problem)
    if not attempts:
        param, message = first_problem or ("model", "no target can serve this request")
        raise GatewayError(400, message, param=param, code="unsupported_parameter")
    return attempts


def _check(
    candidate: Candidate, payload: JSON, images: bool, strict: bool
) -> Attempt | tuple[str, str]:
    caps = candidate.capabilities
    label = candidate.target.label
    feature = _unmet_feature(caps, payload, images)
    if feature is not None:
        what = "image inputs" if feature == "messages" else f"'{feature}'"
        return feature, f"{label} cannot serve {what} for this request"
    inline = images and not caps.image_urls
    if caps.params is None:
        return Attempt(candidate.target, candidate.upstream, payload, (), inline)
    unsupported = [k for k in payload if k not in GATEWAY_PARAMS and k not in caps.params]
    if not unsupported:
        return Attempt(candidate.target, candidate.upstream, payload, (), inline)
    if strict:
        return unsupported[0], f"{label} does not support the parameter '{unsupported[0]}'"
    trimmed = {k: v for k, v in payload.items() if k not in unsupported}
    return Attempt(candidate.target, candidate.upstream, trimmed, tuple(unsupported), inline)
