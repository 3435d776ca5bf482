"""POST /v1/messages: validate, resolve, plan, call with failover, answer as Anthropic does.

One Dispatcher run covers both kinds of step until the first byte reaches the client: a
passthrough failure can fall back to a translated target and the other way round, on the same
failure classes, timeouts, breakers and key leases chat uses. Every error leaves in the Anthropic
envelope; an upstream Anthropic error body is relayed with its own status (except auth failures,
masked by passthrough).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from core import accounting
from core.adapters.base import JSON, ProviderError, Target
from core.admission import admit, estimate_tokens, prompt_estimate
from core.chat import SSE_HEADERS, record_failure, resolve_route, served_headers
from core.dispatch import Dispatcher, ImageInliner, Outcome, completion_call, stream_call
from core.identity import Caller
from core.limits import UNLIMITED, Admission, TenantLimiter
from core.messages.passthrough import Passthrough, PassthroughStream, RelayedError
from core.messages.plan import Direct, Step, plan_messages
from core.messages.response import to_message
from core.messages.stream import AnthropicStreamEncoder
from core.messages.validate import validate_request
from core.relay import relay
from core.routing import ModelRegistry
from core.validate import parse_json_object
from shared.http import JSON_MEDIA

SSE_MEDIA = "text/event-stream; charset=utf-8"
_CLIENT_HEADERS = ("anthropic-version", "anthropic-beta")


class _Call:
    """One request's context, shared by its steps."""

    __slots__ = (
        "admission",
        "caller",
        "client_headers",
        "model",
        "payload",
        "raw",
        "settled",
        "started",
        "stop",
    )

    def __init__(self, caller: Caller, payload: dict[str, Any], raw: bytes, request: Request):
        self.caller = caller
        self.payload = payload
        self.raw = raw
        self.model: str = payload["model"]
        self.client_headers = {
            name: value for name in _CLIENT_HEADERS if (value := request.headers.get(name))
        }
        stop = payload.get("stop_sequences")
        self.stop = tuple(s for s in stop if isinstance(s, str)) if isinstance(stop, list) else ()
        self.started = time.perf_counter()
        self.admission: Admission = UNLIMITED
        self.settled = False  # accounting (which settles the admission) has run

    def headers(self, outcome: Outcome) -> dict[str, str]:
        return {
            **served_headers(self.caller, outcome),
            **self.admission.headers,
            "request-id": self.caller.request_id,
        }

    def fallback_id(self) -> str:
        return "msg_" + self.caller.request_id.removeprefix("req_")

    def account(self, outcome: Outcome, usage: dict[str, Any] | None, status: str) -> None:
        self.settled = True
        accounting.record(
            self.caller, self.model, outcome, usage, status, self.started, self.admission
        )


class MessagesEndpoint:
    def __init__(
        self,
        registry: ModelRegistry,
        dispatcher: Dispatcher,
        passthrough: Passthrough,
        inliner: ImageInliner | None = None,
        limiter: TenantLimiter | None = None,
    ) -> None:
        self._registry = registry
        self._dispatcher = dispatcher
        self._passthrough = passthrough
        self._inliner = inliner
        self._limiter = limiter

    async def __call__(self, request: Request, caller: Caller, raw: bytes) -> Response:
        payload = parse_json_object(raw)
        stream = validate_request(payload)
        call = _Call(caller, payload, raw, request)
        route = resolve_route(self._registry, caller, call.model)
        steps = self._dispatcher.plan(route, payload, plan_messages)
        call.admission = await admit(self._limiter, caller, payload)
        try:
            return await (self._stream(call, steps) if stream else self._complete(call, steps))
        except ProviderError as error:
            call.settled = True
            record_failure(caller, call.model, error, call.started, call.admission)
            if isinstance(error, RelayedError):
                headers = {**error.headers, "x-request-id": caller.request_id}
                return Response(error.body, error.status, headers, JSON_MEDIA)
            raise
        except BaseException:
            if not call.settled:
                call.admission.settle(0)
            raise

    async def _complete(self, call: _Call, steps: list[Step]) -> Response:
        translated = completion_call(self._inliner)

        async def send(step: Step, target: Target) -> tuple[bytes, JSON | None] | JSON:
            if isinstance(step, Direct):
                return await self._passthrough.complete(
                    target, call.payload, call.raw, call.client_headers
                )
            return await translated(step, target)

        result, outcome = await self._dispatcher.run(steps, send, estimate_tokens(call.payload))
        if isinstance(result, tuple):  # passthrough: the upstream's own Message bytes
            body, usage = result
        else:
            usage = result.get("usage")
            message = to_message(result, call.fallback_id(), outcome.target.model, call.stop)
            body = orjson.dumps(message)
        call.account(outcome, usage, "ok")
        return Response(body, media_type=JSON_MEDIA, headers=call.headers(outcome))

    async def _stream(self, call: _Call, steps: list[Step]) -> Response:
        translated = stream_call(self._inliner)

        async def open_step(
            step: Step, target: Target
        ) -> PassthroughStream | tuple[JSON | None, AsyncIterator[JSON]]:
            if isinstance(step, Direct):
                return await self._passthrough.open_stream(
                    target, call.payload, call.raw, call.client_headers
                )
            return await translated(step, target)

        opened, outcome = await self._dispatcher.run(
            steps, open_step, estimate_tokens(call.payload), streaming=True
        )

        def on_end(usage: dict[str, Any] | None, status: str) -> None:
            call.account(outcome, usage, status)

        if isinstance(opened, PassthroughStream):
            body = opened.relay(on_end)
        else:
            first, chunks = opened
            encoder = AnthropicStreamEncoder(call.fallback_id(), outcome.target.model, call.stop)
            body = relay(first, chunks, encoder, on_end, prompt_estimate(call.payload))
        return StreamingResponse(
            body, media_type=SSE_MEDIA, headers={**SSE_HEADERS, **call.headers(outcome)}
        )
