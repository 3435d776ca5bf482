"""The pipeline's stages, in the order they run: read, validate, resolve, plan, admit,
dispatch, encode; then account, which closes every admitted request exactly once.

Each stage is an object built once at start-up (holding what it needs: the registry, the
Dispatcher, the limiter) and called with the request's Exchange; the API's part comes from
`x.spec` (core.pipeline.api). Each concern joins in one place for every API:

- spend: unpriced targets dropped at plan (core.spend.refusal), budgets reserved per attempt in
  dispatch (core.budgets, through the leased attempt), the cost to the client at encode
  (core.spend.quote), the ledger record and every settlement at account (core.ledger);
- the response cache (core.cache.stage) between resolve and plan: a hit answers alone, and
  so does a request coalesced with an identical one in flight (core.cache.coalesce);
- an API whose calls are free (a token count: `free` on its spec) reserves no budget, and its
  tries are no latency samples for the strategies.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Protocol

from core.api.tags import with_body
from core.api.validate import parse_json_object
from core.budgets.ask import BudgetAsk, budget_ask
from core.budgets.enforce import BudgetDowngrade
from core.cache.affinity import Affinities, holder_of
from core.limits.admission import admit_claimed
from core.limits.tenant import TenantLimiter
from core.pipeline.exchange import Exchange
from core.pipeline.prompt_cache import PromptCache, dropped_headers
from core.pipeline.route_policy import apply_rule, facts_of
from core.resilience.dispatch import Dispatcher
from core.routing.demand import PRICED, demand_of
from core.routing.policy.rules import Policy
from core.routing.registry import ModelRegistry, Route
from core.routing.signals import Demand
from core.spend.cost import Pricing
from core.spend.quote import cost_headers
from core.spend.refusal import priced_steps
from core.wire.prompt_cache import collect_dropped
from shared.config_routing import NO_RULE
from shared.errors import GatewayError

AnyExchange = Exchange[Any, Any, Any]


class Stage(Protocol):
    """One named step of every request; raising ends the request (see core.pipeline.run)."""

    name: str

    async def __call__(self, x: AnyExchange) -> None: ...


class Read:
    """The body (read once, by the hop check) as a JSON object."""

    name = "read"

    async def __call__(self, x: AnyExchange) -> None:
        x.payload = parse_json_object(x.body)


class Validate:
    """The API's validator: its request, or a 400 naming the field. The body's billing tags
    (OpenAI's metadata and user, Anthropic's metadata.user_id) join the caller's here, once
    for every API, after the token's and the header's (core.api.tags)."""

    name = "validate"

    async def __call__(self, x: AnyExchange) -> None:
        x.request = x.spec.validate(x)
        tags = with_body(x.caller.tags, x.spec.api, x.payload)
        if tags is not x.caller.tags:
            x.caller = replace(x.caller, tags=tags)


class Resolve:
    """The route for the model: the token must allow it; then the first routing rule that
    holds decides (core.routing.policy: refuse, cap, latency ceiling, a named route or a
    rewrite; core.pipeline.route_policy applies it), else the registry must know the model."""

    name = "resolve"

    def __init__(self, registry: ModelRegistry, policy: Policy | None = None) -> None:
        self._registry = registry
        self._policy = policy if policy is not None and policy.rules else None

    async def __call__(self, x: AnyExchange) -> None:
        model: str = x.request.model
        if not x.caller.allows(model):
            raise GatewayError(
                403,
                f"this token may not use the model '{model}'",
                param="model",
                code="model_not_allowed",
            )
        x.rule = NO_RULE
        policy = self._policy
        if policy is not None:
            rule = policy.decide(facts_of(x, policy.setting))
            if rule is not None:
                x.rule = rule.id
                chosen = apply_rule(rule, x, self._registry)
                if chosen is not None:
                    x.route = chosen
                    return
        route = self._registry.resolve(model, x.caller.tier)
        if route is None:
            raise GatewayError(
                404, f"the model '{model}' does not exist", param="model", code="model_not_found"
            )
        x.route = route


def demand(x: AnyExchange, route: Route) -> Demand:
    """What the route's strategy weighs of this request (core.routing.demand); a latency
    ceiling a routing rule set on the exchange wins over the route's."""
    streaming = bool(getattr(x.request, "stream", False))
    holder, ceiling = holder_of(x.affinity), x.latency_ceiling_s
    if route.strategy not in PRICED or len(route.candidates) < 2:  # nothing to estimate
        return Demand(0, None, streaming, ceiling, holder)
    return demand_of(x.payload, streaming, ceiling, x.prompt_tokens, holder)


def ask_of(x: AnyExchange) -> BudgetAsk:
    """What the request asks of the budgets (needs `x.tokens`, admission's estimate): the
    dispatch stage reserves it per try, a route explanation checks it against the levels."""
    caller, units = x.caller, getattr(x.spec, "units", None)  # an API billed by units says them
    ask = budget_ask(
        caller.tenant,
        caller.request_id,
        x.request.model,
        x.payload,
        x.tokens,
        caller.tags,
        x.prompt_tokens(),
    )
    return ask if units is None else replace(ask, units=units(x.payload))


class Plan:
    """The route's candidates in its strategy's order, then the API's planner; targets the
    operator refuses to serve without a price are left out (core.spend.refusal). A marked
    request's prefix holder is looked up first, once (core.cache.affinity): the strategies
    and the key pools prefer it."""

    name = "plan"

    def __init__(
        self,
        dispatcher: Dispatcher,
        pricing: Pricing | None = None,
        affinity: Affinities | None = None,
    ) -> None:
        self._dispatcher = dispatcher
        self._pricing = pricing
        self._affinity = affinity

    async def __call__(self, x: AnyExchange) -> None:
        if x.affinity is not None and self._affinity is not None:
            await self._affinity.lookup(x.affinity, x.route.name)
        x.steps = self._dispatcher.plan(x.route, x.request, x.spec.plan, demand(x, x.route))
        if self._pricing is not None:
            x.steps = priced_steps(x.steps, self._pricing)


class Admit:
    """The tenant's limits, reserving the token estimate (429 when over); the hop nonce too."""

    name = "admit"

    def __init__(self, limiter: TenantLimiter | None) -> None:
        self._limiter = limiter

    async def __call__(self, x: AnyExchange) -> None:
        x.tokens = x.spec.estimate(x.request, x.prompt_tokens())
        x.admission = await admit_claimed(self._limiter, x.caller, x.payload, x.tokens)


class Dispatch:
    """The planned steps with leased keys and breakers, retries and failover, in the API's
    mode (a stream is dispatched until its first chunk is in hand). Every try reserves on the
    budgets that apply to it; a downgrade budget without room re-routes the request, once, to
    its cheaper model (core.budgets.enforce)."""

    name = "dispatch"

    def __init__(self, dispatcher: Dispatcher, registry: ModelRegistry | None = None) -> None:
        self._dispatcher = dispatcher
        self._registry = registry

    async def __call__(self, x: AnyExchange) -> None:
        await x.caller.settled()  # a replayed hop credential never reaches a provider
        budgets, free = self._dispatcher.budgets, getattr(x.spec, "free", False)
        ask = ask_of(x) if budgets is not None and budgets.enabled and not free else None
        x.sent_dropped = collect_dropped()  # marks a send could not honour (Gemini's caches)
        try:
            await self._run(x, ask, not free)
        except BudgetDowngrade as downgrade:
            if ask is None or self._registry is None:  # nothing to re-route with
                raise
            route = self._registry.resolve(downgrade.model, x.caller.tier)
            if route is None:
                raise GatewayError(
                    503,
                    f"the budget '{downgrade.budget.name}' downgrades to an unavailable model",
                    code="budget_downgrade_unavailable",
                ) from None
            x.route = route
            x.steps = self._dispatcher.plan(route, x.request, x.spec.plan, demand(x, route))
            await self._run(x, replace(ask, downgraded_from=ask.model), True)
            x.outcome.downgraded_from = ask.model

    async def _run(self, x: AnyExchange, ask: BudgetAsk | None, timed: bool) -> None:
        """`timed`: the tries are latency samples (not for a free API's)."""
        holder, stream = holder_of(x.affinity), x.request.stream
        x.result, x.outcome = await self._dispatcher.run(
            x.steps,
            x.spec.call(x),
            x.tokens,
            streaming=stream,
            budget=ask,
            holder=holder,
            timed=timed,
        )
        if x.request.stream:  # dispatched until the first chunk is in hand: the ledger's TTFT
            x.first_chunk = time.perf_counter()


class Encode:
    """The answer in the API's format, complete or streamed, with what it cost: a complete
    answer's cost header is set here for every API; a stream's encoder prices its final
    usage through `x.cost_of` (core.spend.quote)."""

    name = "encode"

    def __init__(self, pricing: Pricing | None = None) -> None:
        self._pricing = pricing

    async def __call__(self, x: AnyExchange) -> None:
        x.pricing = self._pricing
        x.response = response = x.spec.encode(x)
        response.headers.update(dropped_headers(x))  # prompt-cache marks the target dropped
        if x.usage is not None:  # a complete answer (a stream's usage comes at its end)
            response.headers.update(cost_headers(x.cost_of(x.usage)))
        if x.cache_fill is not None:  # a response-cache miss: stored once complete
            await x.cache_fill.encoded(x, response)


def standard_stages(
    registry: ModelRegistry,
    dispatcher: Dispatcher,
    limiter: TenantLimiter | None,
    pricing: Pricing | None = None,
    policy: Policy | None = None,
    cache: Stage | None = None,
    affinity: Affinities | None = None,
) -> tuple[Stage, ...]:
    """Every API's stages, in order (account is the runner's, after them). `cache`: the
    response cache (core.cache.stage), when configured: a hit, or a request coalesced with
    an identical one in flight, needs no plan, no admission of tokens, no upstream.
    `affinity`: the prompt-cache affinity registry (core.cache.affinity; give Account the
    same one)."""
    return (
        Read(),
        Validate(),
        Resolve(registry, policy),  # routing rules: one place for every API
        *((cache,) if cache is not None else ()),  # a response-cache hit ends here
        PromptCache(affinity is not None),  # mode, auto breakpoints, cache key, fingerprint
        Plan(dispatcher, pricing, affinity),
        Admit(limiter),
        Dispatch(dispatcher, registry),  # budgets: reserved per attempt, downgrades re-routed
        Encode(pricing),
    )  # then Account (the runner's): usage line, ledger record, settlements
