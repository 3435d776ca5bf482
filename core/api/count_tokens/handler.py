"""Token counts as pipeline APIs (core.pipeline): what a count brings, written once for both.

A count is a request that generates nothing: its API's validator, its planner (plan.py: the
targets that can count, else the gateway's estimate), a call that sends one counter's request
through the target's provider transport (signing, timeouts, failover and scrubbing as for
every call), and its answer in the API's format. It is `free`: providers do not bill counts,
so no budget is reserved for it (a tenant over budget may still size a prompt), and its tries
are not latency samples (a count is far quicker than the answers the strategies' latency
estimates are about). It is still admitted against the tenant's request rate, and its outcome
is accounted like any request's (a ledger record of zero tokens).

`MessagesCountApi`: POST /v1/messages/count_tokens (Anthropic's `{"input_tokens": N}`;
Anthropic's own bytes when it counted); core.api.count_tokens.responses: the Responses API's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import replace
from typing import Any, Protocol

import orjson
from starlette.responses import Response

from core.api.count_tokens.plan import Countable, CountStep, messages_counter, plan_count
from core.api.count_tokens.request import MessagesCountRequest
from core.limits.admission import prompt_estimate
from core.pipeline.api import Call
from core.pipeline.exchange import Exchange, json_response
from core.providers.adapters.base import JSON, ProviderError, Target
from core.providers.adapters.counting import Counted, CountInput
from core.providers.parsing import guarded_error_parser, parsing
from core.providers.upstream import translating
from core.routing.registry import Route
from core.spend.quote import USAGE_ESTIMATED_HEADER
from core.wire.tokens import estimate_chars, estimate_messages
from shared.errors import Api


class AnyCount(Countable, Protocol):
    """What a count's call and estimate read of its API's request."""

    @property
    def payload(self) -> JSON: ...

    @property
    def counted(self) -> CountInput: ...


CountExchange = Exchange[Any, CountStep, Counted]


class CountApi(ABC):
    """The parts every count shares; an API adds its validator, its planner's counters and its
    answer's format (`answer`)."""

    __slots__ = ()

    operation = "count_tokens"  # metrics and traces: kept apart from chat
    free = True  # no budget reservation, no latency sample (core.pipeline.stages.Dispatch)

    def prompt(self, request: AnyCount) -> int:
        return prompt_estimate(request.payload)

    def estimate(self, request: AnyCount, prompt: int) -> int:
        return 0  # nothing is generated, and a count uses no tokens of the tenant's limits

    def call(self, x: CountExchange) -> Call[CountStep, Counted]:
        request: AnyCount = x.request

        async def count(step: CountStep, target: Target) -> Counted:
            if step.counter is None:
                return _counted_here(request, step)
            counter = step.counter
            with translating(target.label):  # a shape validation missed: 400, never 500
                upstream = counter.build(request.counted, target)
            parse_error = guarded_error_parser(counter.parse_error, target)
            try:
                _, body = await target.provider.transport.fetch(upstream, target, parse_error)
            except ProviderError as error:
                if not counter.refused(error):
                    raise
                return _estimated(request)  # this model does not count here: never a 400
            with parsing(target):  # a reply without a count: 502, fails over
                counted = counter.parse(body, target)
            # Relayed only in the API it answers in: a translated target's is not the client's.
            return replace(counted, body=None) if step.translated else counted

        return count

    def encode(self, x: CountExchange) -> Response:
        result: Counted = x.result
        headers = x.headers()
        if result.estimated:
            headers[USAGE_ESTIMATED_HEADER] = "true"
        return json_response(self.answer(result, headers, x.caller.request_id), headers)

    @abstractmethod
    def answer(self, result: Counted, headers: dict[str, str], request_id: str) -> bytes:
        """The body in the API's own format (and any header of its own)."""

    def relayed(self, x: CountExchange, error: ProviderError) -> Response | None:
        return None


class MessagesCountApi(CountApi):
    __slots__ = ()

    api: Api = "anthropic"  # the error envelope's format

    def validate(self, x: CountExchange) -> MessagesCountRequest:
        return MessagesCountRequest(x.payload, x.body, x.http.headers)

    def plan(self, route: Route, request: MessagesCountRequest) -> list[CountStep]:
        return plan_count(route, request, messages_counter)

    def answer(self, result: Counted, headers: dict[str, str], request_id: str) -> bytes:
        headers["request-id"] = request_id
        if result.body is not None:
            return result.body
        return orjson.dumps({"input_tokens": result.input_tokens})


def _counted_here(request: AnyCount, step: CountStep) -> Counted:
    """The mock's count (its usage's own rule: the canonical messages), or the estimate of a
    route that cannot count."""
    if not step.estimated:
        return Counted(estimate_messages(request.translate()["messages"]))
    return _estimated(request)


def _estimated(request: AnyCount) -> Counted:
    """The gateway's estimate: the messages, the system prompt and the tools' definitions."""
    tools = request.payload.get("tools")
    extra = estimate_chars(len(orjson.dumps(tools))) if tools else 0
    return Counted(prompt_estimate(request.payload) + extra, estimated=True)
