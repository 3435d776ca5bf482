"""/v1/embeddings (OpenAI's API): what embeddings bring to the pipeline (core.pipeline).

Its validator (request.py), embeddings planning (plan.py), a call that builds, sends (through
the provider's transport, core/providers/embeddings_sender.py) and parses one translator's
requests, and its answer: the
vectors in the encoding the client asked for. A response whose usage is the gateway's estimate
(the provider reported none) says so in `x-interlock-usage-estimated: true`.
"""

from __future__ import annotations

from dataclasses import replace

import orjson
from starlette.responses import Response

from core.api.embeddings.plan import Attempt, plan_embeddings
from core.api.embeddings.request import EmbeddingRequest, estimate_input_tokens, validate_embeddings
from core.api.embeddings.response import encode
from core.pipeline.api import Call
from core.pipeline.exchange import Exchange, json_response
from core.providers.adapters.base import ProviderError, Target
from core.providers.adapters.embeddings import Embedded
from core.providers.embeddings_sender import send
from core.providers.mock_embeddings import MockEmbeddings
from core.providers.parsing import parsing
from core.providers.upstream import translating
from core.routing.registry import Route
from core.spend.quote import USAGE_ESTIMATED_HEADER
from shared.errors import Api

EmbeddingsExchange = Exchange[EmbeddingRequest, Attempt, Embedded]


class EmbeddingsApi:
    """The embeddings API's part of the pipeline (complete answers only)."""

    __slots__ = ()

    operation = "embeddings"  # the GenAI operation name (metrics, traces)
    api: Api = "openai"  # the error envelope's format

    def validate(self, x: EmbeddingsExchange) -> EmbeddingRequest:
        return validate_embeddings(x.payload)

    def plan(self, route: Route, request: EmbeddingRequest) -> list[Attempt]:
        return plan_embeddings(route, request)

    def prompt(self, request: EmbeddingRequest) -> int:
        return estimate_input_tokens(request)

    def estimate(self, request: EmbeddingRequest, prompt: int) -> int:
        return prompt  # embeddings produce no tokens: the input is all they use

    def call(self, x: EmbeddingsExchange) -> Call[Attempt, Embedded]:
        return self._call_with_key

    async def _call_with_key(self, attempt: Attempt, target: Target) -> Embedded:
        """The Dispatcher's call: the attempt with the key it leased from the pool."""
        if target is not attempt.target:
            attempt = replace(attempt, target=target)
        translator, request = attempt.translator, attempt.request
        with translating(target.label):  # a shape validation missed: 400, never 500
            if isinstance(translator, MockEmbeddings):
                return translator.embed(request, target)
            requests = translator.build(request, target)
        replies = await send(translator, requests, target)
        with parsing(target):  # a reply a translator cannot read: 502, fails over
            return translator.parse(replies, request, target)

    def encode(self, x: EmbeddingsExchange) -> Response:
        result = x.result
        body = encode(result.body, x.request.encoding_format)
        usage = body.get("usage")
        if result.usage_estimated and isinstance(usage, dict):
            usage = {**usage, "estimated": True}  # for the usage log, not the client
        x.usage = usage
        headers = x.headers()
        if result.usage_estimated:
            headers[USAGE_ESTIMATED_HEADER] = "true"
        return json_response(orjson.dumps(body), headers)

    def relayed(self, x: EmbeddingsExchange, error: ProviderError) -> Response | None:
        return None
