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
- still to come: spans around each stage in the runner's loop (core.pipeline.run).
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
from core.observe import accounting
from core.observe.accounting import Priced
from core.observe.records import Records
from core.pipeline.exchange import Exchange
from core.pipeline.prompt_cache import PromptCache, dropped_headers
from core.pipeline.route_policy import apply_rule, facts_of
from core.providers.adapters.base import ProviderError, Target
from core.resilience.dispatch import Dispatcher, Outcome
from core.routing.demand import PRICED, demand_of
from core.routing.policy.rules import Policy
from core.routing.registry import ModelRegistry, Route
from core.routing.signals import Demand
from core.spend.cost import Pricing
from core.spend.quote import cost_headers
from core.spend.refusal import priced_steps
from core.wire.prompt_cache import collect_dropped
from shared.config_routing import NO_RULE
from shared.errors import GatewayError, UpstreamTarget

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
        budgets = self._dispatcher.budgets
        ask = ask_of(x) if budgets is not None and budgets.enabled else None
        x.sent_dropped = collect_dropped()  # marks a send could not honour (Gemini's caches)
        try:
            await self._run(x, ask)
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
            await self._run(x, replace(ask, downgraded_from=ask.model))
            x.outcome.downgraded_from = ask.model

    async def _run(self, x: AnyExchange, ask: BudgetAsk | None) -> None:
        holder, stream = holder_of(x.affinity), x.request.stream
        x.result, x.outcome = await self._dispatcher.run(
            x.steps, x.spec.call(x), x.tokens, streaming=stream, budget=ask, holder=holder
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


class Account:
    """Closes an admitted request exactly once: one usage line (never any content), one ledger
    record (with its cost, from the `pricing` built at start-up; core.ledger), and its token
    reservations (the tenant's, the key's) settled to what was used. A complete answer is
    accounted when encoded, a stream when it ends (`Exchange.finish`), a failure when it
    leaves; a request that ended before admission has nothing to account. A stream's end also
    settles the serving target's breaker verdict (core.resilience.lease): its outcome is known
    only then, and so is whether it wrote or read its cached prefix (core.cache.affinity)."""

    name = "account"

    def __init__(
        self,
        records: Records | None = None,
        pricing: Pricing | None = None,
        affinity: Affinities | None = None,
    ) -> None:
        self._records = records
        self._pricing = pricing
        self._affinity = affinity

    def _priced(
        self, x: AnyExchange, target: UpstreamTarget | None, usage: dict[str, Any] | None
    ) -> Priced:
        """The request's usage split and cost, computed once: the price encode already put on
        the answer when it is the same usage, else priced here."""
        split = x.split_of(usage)
        cost = x.cost_of(usage) if x.pricing is not None and isinstance(target, Target) else None
        return split, cost or accounting.cost_of(self._pricing, target, split)

    def _record(
        self,
        x: AnyExchange,
        target: UpstreamTarget | None,
        attempts: int,
        status: str,
        priced: Priced,
    ) -> None:
        """The request's outcome record, handed to the metrics and the ledger's writer (a deque
        append, no I/O)."""
        if self._records is None:
            return
        timing = (x.started, x.first_chunk)
        served = (target, attempts)
        record = accounting.ledger_record(
            x.caller, x.spec.api, x.request.model, served, status, timing, priced
        )
        self._records.append(record, x.spec.operation)

    def served(
        self,
        x: AnyExchange,
        usage: dict[str, Any] | None,
        status: str,
        error: ProviderError | None = None,
    ) -> None:
        if x.accounted:
            return
        x.accounted = True
        x.outcome.settle(error, clean=status == "ok")
        priced = self._priced(x, x.outcome.target, usage)
        accounting.record(
            x.caller, x.request.model, x.outcome, usage, status, x.started, x.admission, priced
        )
        if x.affinity is not None and self._affinity is not None and status == "ok":
            self._affinity.served(x.affinity, x.route.name, x.outcome.target, priced[0])
        self._record(x, x.outcome.target, x.outcome.attempts, status, priced)

    def failed(self, x: AnyExchange, error: ProviderError) -> None:
        """No target served: the failure is logged and nothing reserved is kept. The error
        says how many tries were made and carries the tenant's x-ratelimit-* headers."""
        if x.admission is None or x.accounted:
            return
        x.accounted = True
        accounting.record_failure(x.caller, x.request.model, error, x.started, x.admission)
        self._record(
            x, error.target, error.attempts, error.failure_class, self._priced(x, None, None)
        )
        error.headers["x-interlock-attempts"] = str(error.attempts)
        error.headers.update(x.admission.headers)

    def cancelled(self, x: AnyExchange) -> None:
        """The client left before the answer started: the upstream work was cancelled, so
        nothing was used; the usage line says `cancelled` and the reservation is given back."""
        if x.admission is None or x.accounted:
            return
        outcome = _served_by(x)
        if outcome is not None:  # served, but the client left before the answer was sent
            self.served(x, None, "cancelled")
            return
        x.accounted = True
        accounting.record_cancelled(x.caller, x.request.model, x.started, x.admission)
        self._record(x, None, 0, accounting.CANCELLED, self._priced(x, None, None))

    def released(self, x: AnyExchange) -> None:
        """Ended by something else (an image that could not be fetched, a bug): nothing was
        used, so the reservation is given back whole."""
        if x.admission is None or x.accounted:
            return
        x.accounted = True
        x.admission.settle(0)
        outcome = _served_by(x)
        if outcome is not None:
            outcome.settle(None, clean=False)
            if outcome.lease is not None:
                outcome.lease.settle(0)
            if outcome.budget is not None:
                outcome.budget.release()
        if outcome is None:
            self._record(x, None, 0, RELEASED, self._priced(x, None, None))
        else:
            nothing = self._priced(x, outcome.target, None)
            self._record(x, outcome.target, outcome.attempts, RELEASED, nothing)


# The ledger's outcome for a request ended by something other than an upstream (an image that
# could not be fetched): nothing was used or billed.
RELEASED = "error"


def _served_by(x: AnyExchange) -> Outcome | None:
    """Who served the request, once dispatch has (its slot is unset before)."""
    outcome: Outcome | None = getattr(x, "outcome", None)
    return outcome


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
