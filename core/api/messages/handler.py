"""POST /v1/messages (Anthropic's API): what messages bring to the pipeline (core.pipeline).

Its validator (validate.py), messages planning (plan.py: passthrough steps for Anthropic
targets, translated attempts for the rest, in one failover sequence), a call per mode that
sends each kind of step its own way, and its answer: the upstream's own bytes for passthrough,
or the canonical answer translated to a Message or an Anthropic event stream. Every error
leaves in the Anthropic envelope; an upstream Anthropic error body is relayed with its own
status (except auth failures, masked by passthrough).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, cast

import orjson
from starlette.datastructures import Headers
from starlette.responses import Response

from core.api.messages.passthrough import Passthrough, PassthroughStream, RelayedError
from core.api.messages.plan import Direct, Step, plan_messages
from core.api.messages.response import to_message
from core.api.messages.stream import AnthropicStreamEncoder
from core.api.messages.validate import validate_request
from core.api.relay import relay
from core.limits.admission import estimate_tokens, prompt_estimate
from core.pipeline.api import Call
from core.pipeline.exchange import Exchange, json_response, sse_response
from core.providers.adapters.base import JSON, ProviderError, Target
from core.resilience.dispatch import Attempt, ImageInliner, Opened, completion_call, stream_call
from core.routing.registry import Route
from shared.errors import Api
from shared.http import JSON_MEDIA

SSE_MEDIA = "text/event-stream; charset=utf-8"
# The client headers Anthropic reads, sent on to Anthropic targets (messages, counts).
CLIENT_HEADERS = ("anthropic-version", "anthropic-beta")

# A passthrough Message (its bytes, its usage) or a canonical completion.
Completed = tuple[bytes, JSON | None] | JSON
# A passthrough stream or a canonical one opened to its first chunk.
Streamed = PassthroughStream | Opened


class MessagesRequest:
    """A validated Messages request, with what passthrough and translation need of it."""

    __slots__ = ("cache_key", "client_headers", "model", "payload", "raw", "stop", "stream")

    def __init__(self, payload: dict[str, Any], raw: bytes, headers: Headers) -> None:
        self.stream = validate_request(payload)
        self.payload = payload
        self.raw = raw  # passthrough sends the client's own bytes when the model is unchanged
        # The tenant's prompt_cache_key for translated targets that take it (set by the
        # prompt_cache stage, core.pipeline.prompt_cache); never sent to Anthropic.
        self.cache_key: str | None = None
        self.model: str = payload["model"]
        self.client_headers = {
            name: value for name in CLIENT_HEADERS if (value := headers.get(name))
        }
        stop = payload.get("stop_sequences")
        self.stop = tuple(s for s in stop if isinstance(s, str)) if isinstance(stop, list) else ()

    def payload_changed(self) -> None:
        """A routing rule changed the payload (a cap): passthrough sends it, not the client's
        bytes (core.pipeline.route_policy)."""
        self.raw = orjson.dumps(self.payload)


MessagesExchange = Exchange[MessagesRequest, Step, Completed | Streamed]


class MessagesApi:
    """The Messages API's part of the pipeline."""

    __slots__ = ("_inliner", "_passthrough")

    def __init__(self, passthrough: Passthrough, inliner: ImageInliner | None = None) -> None:
        self._passthrough = passthrough
        self._inliner = inliner

    operation = "chat"  # the GenAI operation name (metrics, traces)
    api: Api = "anthropic"  # the error envelope's format

    def validate(self, x: MessagesExchange) -> MessagesRequest:
        return MessagesRequest(x.payload, x.body, x.http.headers)

    def plan(self, route: Route, request: MessagesRequest) -> list[Step]:
        return plan_messages(route, request.payload, request.cache_key)

    def prompt(self, request: MessagesRequest) -> int:
        return prompt_estimate(request.payload)

    def estimate(self, request: MessagesRequest, prompt: int) -> int:
        return estimate_tokens(request.payload, prompt)

    def call(self, x: MessagesExchange) -> Call[Step, Completed | Streamed]:
        """Passthrough steps send the client's own request; translated ones the canonical."""
        request = x.request
        direct: Callable[[Target, JSON, bytes, Mapping[str, str]], Awaitable[Completed | Streamed]]
        canonical: Call[Attempt, Completed | Streamed]
        if request.stream:
            direct, canonical = self._passthrough.open_stream, stream_call(self._inliner)
        else:
            direct, canonical = self._passthrough.complete, completion_call(self._inliner)

        async def send(step: Step, target: Target) -> Completed | Streamed:
            if isinstance(step, Direct):
                return await direct(target, request.payload, request.raw, request.client_headers)
            return await canonical(step, target)

        return send

    def encode(self, x: MessagesExchange) -> Response:
        request = x.request
        headers = x.headers()
        headers["request-id"] = x.caller.request_id
        if request.stream:
            return sse_response(x, self._events(x, cast(Streamed, x.result)), headers, SSE_MEDIA)
        result = cast(Completed, x.result)
        if isinstance(result, tuple):  # passthrough: the upstream's own Message bytes
            body, x.usage = result
        else:
            x.usage = result.get("usage")
            message = to_message(result, _message_id(x), x.outcome.target.model, request.stop)
            body = orjson.dumps(message)
        return json_response(body, headers)

    def _events(self, x: MessagesExchange, opened: Streamed) -> AsyncIterator[bytes]:
        if isinstance(opened, PassthroughStream):
            return opened.relay(x.finish, x.cost_of)
        first, chunks = opened
        target = x.outcome.target
        encoder = AnthropicStreamEncoder(_message_id(x), target.model, x.request.stop, x.cost_of)
        return relay(first, chunks, encoder, x.finish, x.prompt_tokens())

    def relayed(self, x: MessagesExchange, error: ProviderError) -> Response | None:
        if not isinstance(error, RelayedError):
            return None
        headers = {**error.headers, "x-request-id": x.caller.request_id}
        return Response(error.body, error.status, headers, JSON_MEDIA)


def _message_id(x: MessagesExchange) -> str:
    """The id of a translated Message: the request's own, in Anthropic's form."""
    return "msg_" + x.caller.request_id.removeprefix("req_")
