"""POST /v1/messages/count_tokens: what a token count brings to the pipeline (core.pipeline).

A count is a Messages request that generates nothing: its validator (the Messages input, no
max_tokens), its planner (plan.py: the targets that can count, else the gateway's estimate),
a call that sends one counter's request through the target's provider transport (signing,
timeouts, failover and scrubbing as for every call), and its answer, Anthropic's
`{"input_tokens": N}` (Anthropic's own bytes when it counted). It is `free`: providers do not
bill counts, so no budget is reserved for it (a tenant over budget may still size a prompt),
and its tries are not latency samples (a count is far quicker than the answers the
strategies' latency estimates are about). It is still admitted against the tenant's request
rate, and its outcome is accounted like any request's (a ledger record of zero tokens).
"""

from __future__ import annotations

import orjson
from starlette.responses import Response

from core.api.count_tokens.plan import CountStep, plan_count
from core.api.count_tokens.request import CountRequest
from core.limits.admission import prompt_estimate
from core.pipeline.api import Call
from core.pipeline.exchange import Exchange, json_response
from core.providers.adapters.base import ProviderError, Target
from core.providers.adapters.counting import Counted
from core.providers.parsing import guarded_error_parser, parsing
from core.providers.upstream import translating
from core.routing.registry import Route
from core.spend.quote import USAGE_ESTIMATED_HEADER
from core.wire.tokens import estimate_chars, estimate_messages
from shared.errors import Api

CountExchange = Exchange[CountRequest, CountStep, Counted]


class CountTokensApi:
    __slots__ = ()

    operation = "count_tokens"  # metrics and traces: kept apart from chat
    api: Api = "anthropic"  # the error envelope's format
    free = True  # no budget reservation, no latency sample (core.pipeline.stages.Dispatch)

    def validate(self, x: CountExchange) -> CountRequest:
        return CountRequest(x.payload, x.body, x.http.headers)

    def plan(self, route: Route, request: CountRequest) -> list[CountStep]:
        return plan_count(route, request)

    def prompt(self, request: CountRequest) -> int:
        return prompt_estimate(request.payload)

    def estimate(self, request: CountRequest, prompt: int) -> int:
        return 0  # nothing is generated, and a count uses no tokens of the tenant's limits

    def call(self, x: CountExchange) -> Call[CountStep, Counted]:
        request = x.request

        async def count(step: CountStep, target: Target) -> Counted:
            if step.counter is None:
                return _counted_here(request, step)
            counter = step.counter
            with translating(target.label):  # a shape validation missed: 400, never 500
                upstream = counter.build(request.counted, target)
            parse_error = guarded_error_parser(counter.parse_error, target)
            _, body = await target.provider.transport.fetch(upstream, target, parse_error)
            with parsing(target):  # a reply without a count: 502, fails over
                return counter.parse(body, target)

        return count

    def encode(self, x: CountExchange) -> Response:
        result = x.result
        headers = x.headers()
        headers["request-id"] = x.caller.request_id
        if result.estimated:
            headers[USAGE_ESTIMATED_HEADER] = "true"
        body = result.body
        if body is None:
            body = orjson.dumps({"input_tokens": result.input_tokens})
        return json_response(body, headers)

    def relayed(self, x: CountExchange, error: ProviderError) -> Response | None:
        return None


def _counted_here(request: CountRequest, step: CountStep) -> Counted:
    """The mock's count (its usage's own rule: the canonical messages), or the estimate of a
    route that cannot count: the messages, the system prompt and the tools' definitions."""
    if not step.estimated:
        return Counted(estimate_messages(request.translate()["messages"]))
    tools = request.payload.get("tools")
    extra = estimate_chars(len(orjson.dumps(tools))) if tools else 0
    return Counted(prompt_estimate(request.payload) + extra, estimated=True)
