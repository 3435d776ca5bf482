"""/v1/embeddings: validate, resolve, plan, admit, call with failover, answer as OpenAI does.

The flow is chat's (core.chat): the same tenant model check and route resolution, admission
with the input-token estimate, the same Dispatcher (key pools, breakers, retries, failover,
deadline), one accounting record per request, and the same served headers. A response whose
usage is the gateway's estimate (the provider reported none) says so in
`x-interlock-usage-estimated: true`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace

import orjson
from starlette.requests import Request
from starlette.responses import Response

from core import accounting
from core.adapters.base import ProviderError, Target
from core.admission import admit
from core.chat import record_failure, resolve_route, served_headers
from core.dispatch import Dispatcher
from core.embeddings.mock import MockEmbeddings
from core.embeddings.plan import Attempt, plan_embeddings
from core.embeddings.request import estimate_input_tokens, validate_embeddings
from core.embeddings.response import Embedded, encode
from core.embeddings.sender import Sender
from core.identity import Caller
from core.limits import TenantLimiter
from core.routing import ModelRegistry
from core.transport import Transport
from core.upstream import translating
from core.validate import parse_json_object

ESTIMATED_HEADER = "x-interlock-usage-estimated"


class EmbeddingsEndpoint:
    def __init__(
        self,
        registry: ModelRegistry,
        transports: Mapping[str, Transport],
        dispatcher: Dispatcher,
        limiter: TenantLimiter | None = None,
    ) -> None:
        self._registry = registry
        self._dispatcher = dispatcher
        self._limiter = limiter
        self._sender = Sender(transports)  # the providers' own, shared with chat

    async def _call(self, attempt: Attempt) -> Embedded:
        translator, request, target = attempt.translator, attempt.request, attempt.target
        with translating(target.label):  # a shape validation missed: 400, never 500
            if isinstance(translator, MockEmbeddings):
                return translator.embed(request, target)
            requests = translator.build(request, target)
        replies = await self._sender.send(translator, requests, target)
        return translator.parse(replies, request, target)

    async def _call_with_key(self, attempt: Attempt, target: Target) -> Embedded:
        """The Dispatcher's call: the attempt with the key it leased from the pool."""
        return await self._call(
            attempt if target is attempt.target else replace(attempt, target=target)
        )

    async def __call__(self, request: Request, caller: Caller, raw: bytes) -> Response:
        payload = parse_json_object(raw)
        embedding_request = validate_embeddings(payload)
        model = embedding_request.model
        route = resolve_route(self._registry, caller, model)
        attempts = self._dispatcher.plan(route, embedding_request, plan_embeddings)
        tokens = estimate_input_tokens(embedding_request)
        admission = await admit(self._limiter, caller, payload, tokens)
        started = time.perf_counter()
        try:
            result, outcome = await self._dispatcher.run(attempts, self._call_with_key, tokens)
        except ProviderError as error:
            record_failure(caller, model, error, started, admission)
            raise
        except BaseException:
            admission.settle(0)
            raise
        body = encode(result.body, embedding_request.encoding_format)
        usage = body.get("usage")
        if result.usage_estimated and isinstance(usage, dict):
            usage = {**usage, "estimated": True}  # for the usage log, not the client
        accounting.record(caller, model, outcome, usage, "ok", started, admission)
        headers = {**served_headers(caller, outcome), **admission.headers}
        if result.usage_estimated:
            headers[ESTIMATED_HEADER] = "true"
        return Response(orjson.dumps(body), media_type="application/json", headers=headers)
