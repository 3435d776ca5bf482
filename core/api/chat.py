"""/v1/chat/completions (OpenAI's API): what chat brings to the pipeline (core.pipeline).

Its validator (core.api.validate), chat planning (core.routing.planning.plan_chat), the canonical
calls (complete, or a stream opened to its first chunk; remote images inlined once per request), and
its answer: the completion as JSON, or the stream in OpenAI's SSE format (core.api.relay).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from core.api.relay import OpenAIStreamEncoder, relay
from core.api.validate import validate_chat
from core.limits.admission import estimate_tokens, prompt_estimate
from core.pipeline.api import Call
from core.pipeline.exchange import Exchange, json_response, sse_response
from core.providers.adapters.base import JSON, ProviderError
from core.resilience.dispatch import Attempt, ImageInliner, Opened, completion_call, stream_call
from core.routing.planning import plan_chat
from core.routing.registry import Route
from shared.errors import Api


class ChatRequest:
    """A validated chat request: the client's payload and how to answer it."""

    __slots__ = ("include_usage", "model", "payload", "stream")

    def __init__(self, payload: dict[str, Any]) -> None:
        self.stream, self.include_usage = validate_chat(payload)
        self.model: str = payload["model"]
        self.payload = payload


ChatExchange = Exchange[ChatRequest, Attempt, JSON | Opened]


class ChatApi:
    """The chat API's part of the pipeline."""

    __slots__ = ("_inliner",)

    def __init__(self, inliner: ImageInliner | None = None) -> None:
        self._inliner = inliner

    operation = "chat"  # the GenAI operation name (metrics, traces)
    api: Api = "openai"  # the error envelope's format

    def validate(self, x: ChatExchange) -> ChatRequest:
        return ChatRequest(x.payload)

    def plan(self, route: Route, request: ChatRequest) -> list[Attempt]:
        return plan_chat(route, request.payload)

    def prompt(self, request: ChatRequest) -> int:
        return prompt_estimate(request.payload)

    def estimate(self, request: ChatRequest, prompt: int) -> int:
        return estimate_tokens(request.payload, prompt)

    def call(self, x: ChatExchange) -> Call[Attempt, JSON | Opened]:
        if x.request.stream:
            return stream_call(self._inliner)
        return completion_call(self._inliner)

    def encode(self, x: ChatExchange) -> Response:
        result, request = x.result, x.request
        if not isinstance(result, tuple):
            x.usage = result.get("usage")
            return json_response(orjson.dumps(result), x.headers())
        first, chunks = result
        encoder = OpenAIStreamEncoder(request.include_usage, x.cost_of)
        body = relay(first, chunks, encoder, x.finish, x.prompt_tokens())
        return sse_response(x, body, x.headers())

    def relayed(self, x: ChatExchange, error: ProviderError) -> Response | None:
        return None
