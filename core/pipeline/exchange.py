"""One request on its way through the pipeline: what each stage hands the next.

An `Exchange` is the only per-request object the pipeline adds (slotted, built once per
request); stages fill it in order, so a stage reads only what an earlier one wrote: `payload`
(read), `request` (validate), `route`, `rule` and `latency_ceiling_s` (resolve), `affinity`
(prompt_cache), `steps` (plan), `tokens` and `admission` (admit), `result` and `outcome`
(dispatch), `response` and, for a complete answer, `usage` and `cost` (encode). Headers every
API sends on success are built here from it, once.

A stream's response (`sse_response`) is accounted however it ends: by the relay when the stream
ends, and, if the client left before it started (so its body never ran), by the response itself
as `cancelled`, so neither the tenant's reservation nor the target's breaker verdict is left
pending.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Generic

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from core.api.identity import Caller
from core.limits.tenant import Admission
from core.pipeline.api import Q, R, S
from core.providers.adapters.base import JSON, ProviderError
from core.resilience.dispatch import Outcome, close
from core.routing.registry import Route
from core.spend.cost import Cost, Pricing
from core.spend.usage import UsageSplit
from shared.streamed import Streamed

if TYPE_CHECKING:
    from core.cache.affinity import Ticket
    from core.cache.stage import Fill
    from core.observe.tracing import RequestTrace
    from core.pipeline.account import Account
    from core.pipeline.api import ApiSpec

# Streams must reach the client as they come: no cache, no proxy buffering.
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class Exchange(Generic[Q, S, R]):
    """A request, its caller and what the stages have made of it so far."""

    __slots__ = (
        "account",
        "accounted",
        "admission",
        "affinity",
        "body",
        "cache_fill",
        "caller",
        "cost",
        "final_usage",
        "first_chunk",
        "http",
        "latency_ceiling_s",
        "outcome",
        "payload",
        "priced",
        "pricing",
        "prompt",
        "request",
        "response",
        "result",
        "route",
        "rule",
        "sent_dropped",
        "spec",
        "split",
        "started",
        "steps",
        "tokens",
        "trace",
        "usage",
    )
    payload: JSON
    request: Q
    route: Route
    steps: list[S]
    tokens: int
    result: R
    outcome: Outcome

    def __init__(
        self, spec: ApiSpec[Q, S, R], account: Account, http: Request, caller: Caller, body: bytes
    ) -> None:
        self.spec = spec
        self.account = account
        self.http = http
        self.caller = caller
        self.body = body  # as received: the hop check matched it to its digest
        self.started = time.perf_counter()  # the usage log's duration_ms counts from here
        self.admission: Admission | None = None  # set once admitted: from then on, accounted
        self.accounted = False  # the account stage has run (it runs at most once)
        self.first_chunk: float | None = None  # a stream's first chunk in hand (perf_counter)
        self.usage: dict[str, Any] | None = None
        self.response: Response | None = None
        self.pricing: Pricing | None = None  # set by encode (the core's, when it prices)
        self.cost: Cost | None = None  # what the answer cost, once priced
        self.priced: dict[str, Any] | None = None  # the usage `cost` was computed from
        self.split: tuple[dict[str, Any] | None, UsageSplit] | None = None  # see split_of
        # Set by resolve (core.pipeline.route_policy): the routing rule that decided (or
        # "default"), and the latency ceiling it set for the route's strategy, if any.
        self.rule: str | None = None
        self.latency_ceiling_s: float | None = None
        self.prompt: int | None = None  # see prompt_tokens
        # Prompt-cache marks a send could not honour (core.wire.prompt_cache.collect_dropped).
        self.sent_dropped: list[tuple[str, str]] = []
        # Set by the response cache on a miss (core.cache.stage.Fill): encode hands it the
        # answer to store; a stream's store needs the usage its end reported (final_usage).
        self.cache_fill: Fill | None = None
        self.final_usage: dict[str, Any] | None = None
        # Set by the prompt-cache stage for a marked request (core.cache.affinity): its prefix
        # fingerprint, and at plan who holds that prefix.
        self.affinity: Ticket | None = None
        # The request's trace (core.observe.tracing); None when it is not traced.
        self.trace: RequestTrace | None = None

    async def kept(self, cancel: Callable[[], None]) -> bool:
        """The client has left: whether this request's work goes on for others (it leads a
        coalesced flight someone waits on), `cancel` then called once nobody does."""
        fill = self.cache_fill
        return fill is not None and await fill.keep(cancel)

    def prompt_tokens(self) -> int:
        """The request's input tokens, estimated once (after validate) for every stage that
        weighs them: routing rules, the cost strategies, admission, budgets, cut streams."""
        prompt = self.prompt
        if prompt is None:
            prompt = self.prompt = self.spec.prompt(self.request)
        return prompt

    def route_headers(self) -> dict[str, str]:
        """x-interlock-route (the rule id, or "default") and x-interlock-strategy (the route's,
        or "none" when no route was chosen: a refusal, an unknown model), on every response
        once resolve has decided, errors included; none before."""
        if self.rule is None:
            return {}
        route: Route | None = getattr(self, "route", None)
        strategy = route.strategy if route is not None else "none"
        return {"x-interlock-route": self.rule, "x-interlock-strategy": strategy}

    def cost_of(self, usage: dict[str, Any] | None) -> Cost | None:
        """The serving target's price of `usage`, computed once per usage object (encode prices
        the answer it sends; account reuses that price for the ledger and the budgets)."""
        if self.pricing is None or usage is None:
            return None
        if self.priced is not usage:
            self.cost = self.pricing.cost(self.outcome.target, self.split_of(usage))
            self.priced = usage
        return self.cost

    def split_of(self, usage: dict[str, Any] | None) -> UsageSplit:
        """`usage` split by kind of token, computed once per usage object (the price, the
        ledger, the budgets and the affinity all read it)."""
        split = self.split
        if split is None or split[0] is not usage:
            split = self.split = (usage, UsageSplit.from_usage(usage))
        return split[1]

    def finish(
        self, usage: dict[str, Any] | None, status: str, error: ProviderError | None = None
    ) -> None:
        """A stream's end (core.api.relay's UsageSink): ok, cut by the upstream (`error`) or
        cancelled by the client, it is accounted with what it used and settles the target's
        breaker verdict."""
        if status == "ok":
            self.final_usage = usage
        self.account.served(self, usage, status, error)
        if self.trace is not None:  # a traced stream's spans end with it
            self.trace.finished(self, usage, status, error)

    def headers(self) -> dict[str, str]:
        """What served the request (x-request-id, x-interlock-*) and the tenant's
        x-ratelimit-* headers."""
        outcome = self.outcome
        headers = {
            "x-request-id": self.caller.request_id,
            "x-interlock-provider": outcome.target.provider.name,
            "x-interlock-model": outcome.target.model,
            "x-interlock-attempts": str(outcome.attempts),
            "x-interlock-failovers": str(outcome.failovers),
            "x-interlock-retries": str(outcome.retries),
        }
        if outcome.dropped:
            headers["x-interlock-dropped-params"] = ",".join(outcome.dropped)
        headers.update(outcome.budget_headers())
        headers.update(self.route_headers())
        if self.admission is not None:
            headers.update(self.admission.headers)
        return headers


def json_response(body: bytes, headers: dict[str, str]) -> Response:
    return Response(body, media_type="application/json", headers=headers)


def sse_response(
    x: Exchange[Any, Any, Any],
    body: AsyncIterator[bytes],
    headers: dict[str, str],
    media_type: str = "text/event-stream",
) -> StreamingResponse:
    return AccountedStream(x, body, {**SSE_HEADERS, **headers}, media_type)


class AccountedStream(Streamed):
    """A stream whose request is accounted even if its body never ran: a client that left
    between dispatch and the first byte (the server then never starts the body, so its own
    end-of-stream accounting never runs)."""

    def __init__(
        self,
        x: Exchange[Any, Any, Any],
        body: AsyncIterator[bytes],
        headers: dict[str, str],
        media_type: str,
    ) -> None:
        super().__init__(body, media_type=media_type, headers=headers)
        self._body = body
        self._exchange = x

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # A body left suspended mid-stream ends now (its own accounting runs, from what
            # was streamed); then, if it never started, the request is accounted here.
            await close(self._body)
            self._exchange.finish(None, "cancelled")  # a no-op once accounted
