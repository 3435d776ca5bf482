"""Choosing and calling targets, independent of the client's API format.

Planning is capability-aware: a target that cannot serve the request (streaming, tools,
images, a response_format, or a parameter in strict mode) is skipped. Calls fail over to the
next planned target on retryable failure classes, for streams only until the first chunk.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from core.adapters.base import JSON, Capabilities, ProviderError, Target
from core.routing import Candidate, Route
from core.upstream import Upstream
from shared.errors import FailureClass, GatewayError

log = logging.getLogger("interlock.core")

FAILOVER_CLASSES = frozenset(
    {
        FailureClass.RATE_LIMIT,
        FailureClass.QUOTA_EXHAUSTED,
        FailureClass.TRANSIENT,
        FailureClass.TIMEOUT,
        FailureClass.AUTH,
        FailureClass.CONTEXT_LENGTH,
    }
)

# Always understood by the gateway itself, whatever the target.
GATEWAY_PARAMS = frozenset({"model", "messages", "stream", "stream_options"})


@dataclass(slots=True)
class Attempt:
    target: Target
    upstream: Upstream
    payload: JSON
    dropped: tuple[str, ...]
    # The target needs image bytes: remote image URLs are fetched and inlined before the call.
    inline_images: bool = False


# Turns remote image URLs into data: URLs (core.images.ImageFetcher.inline).
ImageInliner = Callable[[JSON], Awaitable[JSON]]


@dataclass(slots=True)
class Outcome:
    target: Target
    attempts: int
    dropped: tuple[str, ...]


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


def plan(route: Route, payload: JSON) -> list[Attempt]:
    """Targets able to serve this request, in route order, each with its payload variant."""
    if route.unrestricted:
        return [Attempt(c.target, c.upstream, payload, ()) for c in route.candidates]
    images = _uses_images(payload)
    attempts: list[Attempt] = []
    first_problem: tuple[str, str] | None = None
    for candidate in route.candidates:
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


class _Payloads:
    """Each attempt's payload, fetching remote images at most once per request."""

    __slots__ = ("_inlined", "_inliner")

    def __init__(self, inliner: ImageInliner | None) -> None:
        self._inliner = inliner
        self._inlined: dict[int, JSON] = {}

    async def for_attempt(self, attempt: Attempt) -> JSON:
        if not attempt.inline_images or self._inliner is None:
            return attempt.payload
        key = id(attempt.payload)
        if key not in self._inlined:
            self._inlined[key] = await self._inliner(attempt.payload)
        return self._inlined[key]


def _may_fail_over(error: ProviderError, remaining: int) -> bool:
    return remaining > 0 and error.failure_class in FAILOVER_CLASSES


async def complete(
    attempts: list[Attempt], inliner: ImageInliner | None = None
) -> tuple[JSON, Outcome]:
    payloads = _Payloads(inliner)
    for number, attempt in enumerate(attempts, start=1):
        payload = await payloads.for_attempt(attempt)
        try:
            result = await attempt.upstream.complete(payload, attempt.target)
        except ProviderError as error:
            error.attempts, error.target = number, attempt.target
            if _may_fail_over(error, len(attempts) - number):
                log.warning("failover from %s: %s", attempt.target.label, error.failure_class)
                continue
            raise
        return result, Outcome(attempt.target, number, attempt.dropped)
    raise AssertionError("plan() never returns an empty list")


async def open_stream(
    attempts: list[Attempt], inliner: ImageInliner | None = None
) -> tuple[JSON | None, AsyncIterator[JSON], Outcome]:
    """The first chunk in hand (or None for an empty stream), the rest, and who serves it."""
    payloads = _Payloads(inliner)
    for number, attempt in enumerate(attempts, start=1):
        payload = await payloads.for_attempt(attempt)
        chunks = attempt.upstream.stream(payload, attempt.target)
        try:
            first: JSON | None = await anext(chunks)
        except StopAsyncIteration:
            first = None
        except ProviderError as error:
            await close(chunks)
            error.attempts, error.target = number, attempt.target
            if _may_fail_over(error, len(attempts) - number):
                log.warning("failover from %s: %s", attempt.target.label, error.failure_class)
                continue
            raise
        return first, chunks, Outcome(attempt.target, number, attempt.dropped)
    raise AssertionError("plan() never returns an empty list")


async def close(chunks: AsyncIterator[Any]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
