"""/v1/chat/completions: validate, resolve, call a target (failing over), answer or stream.

Streams may fail over freely until the first chunk is in hand; after that an upstream failure
ends the client's stream with an error event in its format, never with a clean close.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from core import accounting
from core.adapters.base import JSON, ProviderError, Target
from core.identity import Caller
from core.routing import ModelRegistry, Route
from core.sse import DONE, encode_data
from core.validate import parse_json_object, validate_chat
from shared.errors import FailureClass, GatewayError
from shared.http import read_body

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

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def resolve_route(registry: ModelRegistry, caller: Caller, model: str) -> Route:
    if not caller.allows(model):
        raise GatewayError(
            403,
            f"this token may not use the model '{model}'",
            param="model",
            code="model_not_allowed",
        )
    route = registry.resolve(model)
    if route is None:
        raise GatewayError(
            404, f"the model '{model}' does not exist", param="model", code="model_not_found"
        )
    return route


def served_headers(caller: Caller, target: Target, attempts: int) -> dict[str, str]:
    return {
        "x-request-id": caller.request_id,
        "x-interlock-provider": target.provider.name,
        "x-interlock-model": target.model,
        "x-interlock-attempts": str(attempts),
    }


def _may_fail_over(error: ProviderError, remaining: int) -> bool:
    return remaining > 0 and error.failure_class in FAILOVER_CLASSES


async def chat_completions(
    request: Request, caller: Caller, registry: ModelRegistry, max_body: int
) -> Response:
    payload = parse_json_object(await read_body(request, max_body))
    stream, include_usage = validate_chat(payload)
    model: str = payload["model"]
    route = resolve_route(registry, caller, model)
    started = time.perf_counter()
    if stream:
        return await _stream(payload, include_usage, caller, route, started)
    return await _complete(payload, caller, route, started)


async def _complete(payload: JSON, caller: Caller, route: Route, started: float) -> Response:
    targets = route.targets
    for attempt, (target, upstream) in enumerate(targets, start=1):
        try:
            result = await upstream.complete(payload, target)
        except ProviderError as error:
            if _may_fail_over(error, len(targets) - attempt):
                log.warning("failover from %s: %s", target.label, error.failure_class)
                continue
            accounting.record(
                caller, route.name, target, None, error.failure_class, started, attempt
            )
            raise
        accounting.record(caller, route.name, target, result.get("usage"), "ok", started, attempt)
        return Response(
            orjson.dumps(result),
            media_type="application/json",
            headers=served_headers(caller, target, attempt),
        )
    raise AssertionError("a route always has at least one target")


async def _stream(
    payload: JSON, include_usage: bool, caller: Caller, route: Route, started: float
) -> Response:
    targets = route.targets
    for attempt, (target, upstream) in enumerate(targets, start=1):
        chunks = upstream.stream(payload, target)
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            first = None
        except ProviderError as error:
            await _close(chunks)
            if _may_fail_over(error, len(targets) - attempt):
                log.warning("failover from %s: %s", target.label, error.failure_class)
                continue
            accounting.record(
                caller, route.name, target, None, error.failure_class, started, attempt
            )
            raise
        body = _relay(first, chunks, include_usage, caller, route, target, started, attempt)
        return StreamingResponse(
            body,
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **served_headers(caller, target, attempt)},
        )
    raise AssertionError("a route always has at least one target")


async def _relay(
    first: JSON | None,
    chunks: AsyncIterator[JSON],
    include_usage: bool,
    caller: Caller,
    route: Route,
    target: Target,
    started: float,
    attempts: int,
) -> AsyncIterator[bytes]:
    usage: dict[str, Any] | None = None
    outcome = "ok"
    try:
        if first is not None:
            usage, out = _outgoing(first, include_usage)
            if out is not None:
                yield out
        async for chunk in chunks:
            found, out = _outgoing(chunk, include_usage)
            usage = found or usage
            if out is not None:
                yield out
        yield DONE
    except ProviderError as error:
        outcome = f"cut:{error.failure_class}"
        yield b"data: " + error.openai_body() + b"\n\n"
    finally:
        await _close(chunks)
        accounting.record(caller, route.name, target, usage, outcome, started, attempts)


def _outgoing(chunk: JSON, include_usage: bool) -> tuple[dict[str, Any] | None, bytes | None]:
    """The usage chunk (empty choices) is always requested upstream, shown only if asked."""
    usage = chunk.get("usage")
    if usage and not chunk.get("choices"):
        return usage, (encode_data(chunk) if include_usage else None)
    if usage and not include_usage:
        chunk = {k: v for k, v in chunk.items() if k != "usage"}
    return (usage or None), encode_data(chunk)


async def _close(chunks: AsyncIterator[JSON]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
