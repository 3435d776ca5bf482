"""/v1/chat/completions: validate, admit, resolve, dispatch, answer in the OpenAI format."""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from core import accounting
from core.adapters.base import ProviderError
from core.admission import admit, estimate_tokens, prompt_estimate
from core.dispatch import Dispatcher, ImageInliner, Outcome
from core.identity import Caller
from core.limits import Admission, TenantLimiter
from core.planning import plan_chat
from core.relay import OpenAIStreamEncoder, relay
from core.routing import ModelRegistry, Route
from core.validate import parse_json_object, validate_chat
from shared.errors import GatewayError

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def resolve_route(registry: ModelRegistry, caller: Caller, model: str) -> Route:
    if not caller.allows(model):
        raise GatewayError(
            403,
            f"this token may not use the model '{model}'",
            param="model",
            code="model_not_allowed",
        )
    route = registry.resolve(model, caller.tier)
    if route is None:
        raise GatewayError(
            404, f"the model '{model}' does not exist", param="model", code="model_not_found"
        )
    return route


def served_headers(caller: Caller, outcome: Outcome) -> dict[str, str]:
    headers = {
        "x-request-id": caller.request_id,
        "x-interlock-provider": outcome.target.provider.name,
        "x-interlock-model": outcome.target.model,
        "x-interlock-attempts": str(outcome.attempts),
        "x-interlock-failovers": str(outcome.failovers),
        "x-interlock-retries": str(outcome.retries),
    }
    if outcome.dropped:
        headers["x-interlock-dropped-params"] = ",".join(outcome.dropped)
    return headers


def record_failure(
    caller: Caller,
    model: str,
    error: ProviderError,
    started: float,
    admission: Admission | None = None,
) -> None:
    accounting.record_failure(caller, model, error, started, admission)
    error.headers["x-interlock-attempts"] = str(error.attempts)  # failures say what was tried
    if admission is not None and admission.headers:
        error.headers.update(admission.headers)


class ChatEndpoint:
    def __init__(
        self,
        registry: ModelRegistry,
        dispatcher: Dispatcher,
        limiter: TenantLimiter | None = None,
        inliner: ImageInliner | None = None,
    ) -> None:
        self._registry = registry
        self._dispatcher = dispatcher
        self._limiter = limiter
        self._inliner = inliner

    async def __call__(self, request: Request, caller: Caller, body: bytes) -> Response:
        payload = parse_json_object(body)
        stream, include_usage = validate_chat(payload)
        model: str = payload["model"]
        dispatcher = self._dispatcher
        route = resolve_route(self._registry, caller, model)
        attempts = dispatcher.plan(route, payload, plan_chat)
        tokens = estimate_tokens(payload)
        admission = await admit(self._limiter, caller, payload, tokens)
        started = time.perf_counter()
        try:
            if stream:
                first, chunks, outcome = await dispatcher.open_stream(
                    attempts, self._inliner, tokens
                )
            else:
                result, outcome = await dispatcher.complete(attempts, self._inliner, tokens)
        except ProviderError as error:
            record_failure(caller, model, error, started, admission)
            raise
        except BaseException:
            admission.settle(0)  # e.g. an image could not be fetched: nothing was used
            raise
        headers = {**served_headers(caller, outcome), **admission.headers}
        if not stream:
            accounting.record(caller, model, outcome, result.get("usage"), "ok", started, admission)
            return Response(orjson.dumps(result), media_type="application/json", headers=headers)

        def on_end(usage: dict[str, Any] | None, status: str) -> None:
            accounting.record(caller, model, outcome, usage, status, started, admission)

        return StreamingResponse(
            relay(
                first, chunks, OpenAIStreamEncoder(include_usage), on_end, prompt_estimate(payload)
            ),
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **headers},
        )
