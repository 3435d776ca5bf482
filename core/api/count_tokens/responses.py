"""POST /v1/responses/input_tokens (OpenAI's Responses API): a Responses request's input tokens,
`{"object": "response.input_tokens", "input_tokens": N}`, as the OpenAI SDK's
`responses.input_tokens.count` asks.

Validated and translated as a Responses request is (core.api.responses: the same fields, a
`previous_response_id` looked up in the tenant's stored responses and its items inlined), then
counted by the route's targets (core.api.count_tokens.plan): OpenAI itself is sent the
client's request (history inlined, model rewritten) at its own `/responses/input_tokens`;
Anthropic, Gemini and Bedrock count its canonical translation; a request only OpenAI can serve
(built-in tools, file inputs) is counted by OpenAI alone. Azure's v1 API has no such endpoint. The
gateway requires `model` (it routes by it), where OpenAI would count without one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from core.api.count_tokens.handler import CountApi, CountExchange
from core.api.count_tokens.plan import TRANSLATED, CountStep, plan_count
from core.api.responses.handler import ResponsesRequest
from core.api.responses.passthrough import responses_request, with_history
from core.api.responses.plan import responses_url
from core.api.responses.store import History, ResponseStore, history_of
from core.providers.adapters.anthropic.counting import ANTHROPIC_COUNTER
from core.providers.adapters.base import JSON, ProviderError, Target, UpstreamRequest
from core.providers.adapters.counting import Counted, Counter, CountInput, reply_count
from core.providers.adapters.openai_compat import ADAPTER as OPENAI
from core.routing.registry import Route
from shared.errors import Api

OBJECT = "response.input_tokens"


class ResponsesCounter:
    """OpenAI's own count. Azure's v1 API speaks the Responses API but answers this endpoint
    with a 404 (reported in May 2026), so its targets are passed over."""

    __slots__ = ()

    def problem(self, target: Target) -> str | None:
        if target.provider.kind == OPENAI.kind and responses_url(target) is not None:
            return None
        return f"{target.label} has no Responses input token count"

    def build(self, request: CountInput, target: Target) -> UpstreamRequest:
        return responses_request(target, request.own_body(target.model), False, "/input_tokens")

    def parse(self, body: bytes, target: Target) -> Counted:
        return Counted(reply_count(body, "input_tokens"), body)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        return OPENAI.parse_error(status, headers, body)

    def refused(self, error: ProviderError) -> bool:
        return False  # the provider counts for every model it serves


RESPONSES_COUNTER = ResponsesCounter()


def responses_counter(target: Target) -> tuple[Counter, bool] | None:
    """OpenAI reads the client's request; Anthropic, Gemini, Bedrock its translation."""
    if responses_url(target) is not None:  # OpenAI, or Azure v1 (no count: passed over)
        return RESPONSES_COUNTER, False
    kind = target.provider.kind
    counter = ANTHROPIC_COUNTER if kind == "anthropic" else TRANSLATED.get(kind)
    return None if counter is None else (counter, True)


class ResponsesCountRequest:
    """A validated Responses request to count: its canonical form (`payload`, what estimates
    and translated counters read) and the client's own, its history inlined."""

    __slots__ = ("_refusal", "counted", "model", "payload")

    stream = False  # a count is always answered whole

    def __init__(self, body: JSON, raw: bytes, history: list[Any] | None) -> None:
        request = ResponsesRequest(body, raw, history)
        self.model = request.model
        self.payload = request.payload
        self._refusal = request.refusal
        own = with_history(body, history)
        sent = raw if own is body else orjson.dumps(own)
        self.counted = CountInput(own, sent, {}, request.payload, api="openai")

    def translate(self) -> JSON:
        if self._refusal is not None:  # only a target speaking the Responses API can take it
            raise self._refusal
        return self.payload


class ResponsesCountApi(CountApi):
    __slots__ = ("_responses",)

    api: Api = "openai"  # the error envelope's format

    def __init__(self, responses: ResponseStore) -> None:
        self._responses = responses

    @property
    def before_validate(self) -> tuple[History]:
        """The `previous_response_id` lookup, as for /v1/responses."""
        return (History(self._responses),)

    def validate(self, x: CountExchange) -> ResponsesCountRequest:
        request = ResponsesCountRequest(x.payload, x.body, history_of(x.http))
        x.payload = request.payload  # later stages read the canonical form, as for responses
        return request

    def plan(self, route: Route, request: ResponsesCountRequest) -> list[CountStep]:
        return plan_count(route, request, responses_counter)

    def answer(self, result: Counted, headers: dict[str, str], request_id: str) -> bytes:
        if result.body is not None:
            return result.body
        return orjson.dumps({"object": OBJECT, "input_tokens": result.input_tokens})
