"""POST /v1/responses (OpenAI's Responses API): what it brings to the pipeline (core.pipeline).

Its validator (validate.py, request.py: the canonical chat payload, which becomes `x.payload`
so admission, budgets, routing rules and the prompt-cache stage read it as they read chat),
planning (plan.py: passthrough to targets that speak the API, translation for the rest, one
failover sequence), a call per step kind, and its answer: the upstream's own bytes for
passthrough, else the canonical answer as a `response` object or a Responses event stream.
Accounting is chat's (api "openai", operation "chat"). A stored response (store.py) is written
before the answer (or the stream's final event) leaves, so a client continuing with
`previous_response_id` at once always finds it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any, cast

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from core.api.identity import Caller
from core.api.relay import relay
from core.api.responses import cached
from core.api.responses.items import with_ids
from core.api.responses.passthrough import (
    ResponsesPassthrough,
    ResponsesStream,
    canonical_usage,
    upstream_body,
)
from core.api.responses.plan import Direct, Step, plan_responses
from core.api.responses.request import (
    input_items,
    renamed,
    to_canonical,
    without_openai_only,
)
from core.api.responses.response import new_id, to_response
from core.api.responses.store import History, ResponseStore, history_of, not_found
from core.api.responses.stream import ResponsesStreamEncoder
from core.api.responses.validate import validate_request
from core.api.validate import validate_chat
from core.limits.admission import estimate_tokens, prompt_estimate
from core.pipeline.api import Call
from core.pipeline.exchange import Exchange, json_response, sse_response
from core.providers.adapters.base import JSON, ProviderError, Target
from core.resilience.dispatch import (
    Attempt,
    ImageInliner,
    Opened,
    close,
    completion_call,
    stream_call,
)
from core.routing.registry import Route
from shared.errors import Api, GatewayError

# A passthrough response (its bytes, the object) or a canonical completion.
Completed = tuple[bytes, JSON] | JSON
Streamed = ResponsesStream | Opened


class ResponsesRequest:
    """A validated Responses request: the client's body, and its canonical translation."""

    __slots__ = ("body", "capped", "history", "model", "payload", "raw", "refusal", "stream")

    def __init__(self, body: JSON, raw: bytes, history: list[Any] | None) -> None:
        self.stream, self.refusal = validate_request(body)
        self.body = body
        self.raw = raw
        self.history = history
        self.model: str = body["model"]
        self.capped = False  # a routing rule lowered the payload's max_tokens
        try:
            self.payload = to_canonical(body, history)
        except GatewayError as error:
            if error.code != "unsupported_parameter":
                raise
            self.refusal = self.refusal or error  # only passthrough targets can serve it
            self.payload = _estimate_only(body, history)
            return
        try:  # the shapes every adapter relies on (schemas, tool parameters), as chat checks
            validate_chat(self.payload)
        except GatewayError as error:
            raise renamed(error) from None

    def payload_changed(self) -> None:
        """A routing rule capped the payload (core.pipeline.route_policy)."""
        self.capped = True

    def upstream_body(self, target: Target) -> bytes:
        """What a passthrough target gets: the client's request, its history inlined, with the
        gateway's cap and tenant-scoped prompt_cache_key."""
        body, raw = self.body, self.raw
        key = self.payload.get("prompt_cache_key")
        if self.capped or key is not None:
            body = {**body, "max_output_tokens": self.payload.get("max_tokens")}
            if key is not None:
                body["prompt_cache_key"] = key
            if body["max_output_tokens"] is None:
                del body["max_output_tokens"]
            raw = orjson.dumps(body)
        return upstream_body(body, raw, self.history, target)


def _estimate_only(body: JSON, history: list[Any] | None) -> JSON:
    """The canonical payload of what every target could read, for estimates and routing."""
    try:
        return to_canonical(without_openai_only(body), history)
    except GatewayError:
        return {"model": body["model"], "messages": [{"role": "user", "content": ""}]}


ResponsesExchange = Exchange[ResponsesRequest, Step, Completed | Streamed]


class ResponsesApi:
    """The Responses API's part of the pipeline."""

    __slots__ = ("_inliner", "_passthrough", "responses")

    def __init__(
        self,
        passthrough: ResponsesPassthrough,
        responses: ResponseStore,
        inliner: ImageInliner | None = None,
    ) -> None:
        self._passthrough = passthrough
        self.responses = responses
        self._inliner = inliner

    operation = "chat"  # the GenAI operation name (metrics, traces)
    api: Api = "openai"  # the error envelope's format

    @property
    def before_validate(self) -> tuple[History]:
        """The stages this API runs between read and validate (here and in a route
        explanation): the `previous_response_id` lookup."""
        return (History(self.responses),)

    def validate(self, x: ResponsesExchange) -> ResponsesRequest:
        request = ResponsesRequest(x.payload, x.body, history_of(x.http))
        x.payload = request.payload  # every later stage reads the canonical form
        return request

    def plan(self, route: Route, request: ResponsesRequest) -> list[Step]:
        return plan_responses(route, request)

    def prompt(self, request: ResponsesRequest) -> int:
        return prompt_estimate(request.payload)

    def estimate(self, request: ResponsesRequest, prompt: int) -> int:
        return estimate_tokens(request.payload, prompt)

    def call(self, x: ResponsesExchange) -> Call[Step, Completed | Streamed]:
        request = x.request
        canonical: Call[Attempt, Any] = (
            stream_call(self._inliner) if request.stream else completion_call(self._inliner)
        )

        async def send(step: Step, target: Target) -> Completed | Streamed:
            if isinstance(step, Direct):
                sent = request.upstream_body(target)
                if request.stream:
                    return await self._passthrough.open_stream(target, sent)
                return await self._passthrough.complete(target, sent)
            return cast(Completed | Streamed, await canonical(step, target))

        return send

    def encode(self, x: ResponsesExchange) -> Response:
        headers = x.headers()
        if x.request.stream:
            return sse_response(x, self._events(x, cast(Streamed, x.result)), headers)
        result = cast(Completed, x.result)
        if isinstance(result, tuple):  # passthrough: the upstream's own bytes
            body, response = result
            x.usage = canonical_usage(response.get("usage"))
        else:
            x.usage = result.get("usage")
            response_id = new_id("resp_")
            response = to_response(result, x.request.body, response_id, x.outcome.target.model)
            body = orjson.dumps(response)
        if not self._keeps(x):
            return json_response(body, headers)
        return StoredFirst(body, headers, partial(self._save, x, response))

    # The response cache's seam (core.cache.stage.Cached; the how in core.api.responses.cached).
    cache_kind = cached.KIND

    def cache_payload(self, x: ResponsesExchange) -> JSON:
        request = x.request
        max_tokens = x.payload.get("max_tokens")
        return cached.key_payload(request.body, request.history, max_tokens, request.capped)

    def cache_entry(self, raw: bytes, streamed: bool) -> bytes | None:
        return cached.entry_of(raw, streamed)

    def cache_read(self, body: bytes) -> JSON | None:
        return cached.read(body)

    async def cache_answer(
        self, x: ResponsesExchange, kept: JSON, headers: dict[str, str]
    ) -> Response:
        return await cached.hit(kept, x.request.body, headers, self._saver(x))

    async def cache_follow(self, x: ResponsesExchange) -> None:
        if x.response is not None:
            await cached.follow(x.response, x.request.body, self._saver(x))

    def _saver(self, x: ResponsesExchange) -> cached.Save | None:
        return partial(self._save, x) if self._keeps(x) else None

    def _keeps(self, x: ResponsesExchange) -> bool:
        return x.request.body.get("store") is not False

    async def _save(self, x: ResponsesExchange, response: JSON) -> None:
        request = x.request
        output = response.get("output")
        given = with_ids([*(request.history or ()), *input_items(request.body.get("input"))])
        items = [*given, *(output if isinstance(output, list) else ())]
        await self.responses.save(x.caller.tenant, response, items)

    def _events(self, x: ResponsesExchange, opened: Streamed) -> AsyncIterator[bytes]:
        finished: list[JSON] = []
        if isinstance(opened, ResponsesStream):
            parts = opened.relay(x.finish, x.cost_of, finished.append)
        else:
            first, chunks = opened
            model = x.outcome.target.model
            encoder = ResponsesStreamEncoder(
                x.request.body, new_id("resp_"), model, x.cost_of, finished.append
            )
            parts = relay(first, chunks, encoder, x.finish, x.prompt_tokens())
        return self._storing(x, parts, finished)

    async def _storing(
        self, x: ResponsesExchange, parts: AsyncIterator[bytes], finished: list[JSON]
    ) -> AsyncIterator[bytes]:
        """The stream, its finished response stored before the event that ends it is sent."""
        saved = not self._keeps(x)
        try:
            async for part in parts:
                if finished and not saved:
                    saved = True
                    await self._save(x, finished[0])
                yield part
        finally:
            await close(parts)

    def relayed(self, x: ResponsesExchange, error: ProviderError) -> Response | None:
        return None


class StoredFirst(Response):
    """A complete answer sent once its response is stored (so a follow-up finds it)."""

    def __init__(
        self, body: bytes, headers: dict[str, str], save: Callable[[], Awaitable[None]]
    ) -> None:
        super().__init__(body, media_type="application/json", headers=headers)
        self._save = save

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._save()
        await super().__call__(scope, receive, send)


def stored_endpoints(responses: ResponseStore) -> tuple[Any, Any]:
    """GET and DELETE /v1/responses/{response_id}, for the caller's tenant only."""

    async def get(request: Request, caller: Caller, body: bytes) -> Response:
        response_id = request.path_params["response_id"]
        entry = await responses.load(caller.tenant, response_id)
        if entry is None or not isinstance(entry.get("response"), dict):
            raise not_found(response_id)
        headers = {"x-request-id": caller.request_id}
        return json_response(orjson.dumps(entry["response"]), headers)

    async def delete(request: Request, caller: Caller, body: bytes) -> Response:
        response_id = request.path_params["response_id"]
        if not await responses.delete(caller.tenant, response_id):
            raise not_found(response_id)
        answer = {"id": response_id, "object": "response", "deleted": True}
        return json_response(orjson.dumps(answer), {"x-request-id": caller.request_id})

    return get, delete
