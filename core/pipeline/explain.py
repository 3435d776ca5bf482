"""Route explanation: what the pipeline would do with a request, without doing any of it.

`RouteExplainer.explain` runs the pipeline's own stages up to resolve (read, the stages an API
runs before validate (the Responses API's `previous_response_id` lookup, a read of the
tenant's stored response), validate, and resolve with the routing policy: the same objects'
classes, so the rule shown is the rule that would match), then, for the chosen route, the
numbers the strategies order by (core.routing.signals.explain, priced for the request's
estimate whatever the strategy) and, per candidate, why it would be passed over:

- `capability`: the API's own planner refuses it (a feature, a parameter in strict mode, a
  prompt over its context); the planner's message says which;
- `unpriced`: the operator refuses unpriced models (core.spend.refusal);
- `budget`: a block or downgrade budget that applies has no room for this target's estimate,
  as this replica last saw the budget (core.budgets.enforce.Budgets.short_of);
- `circuit_open`: its breaker refuses tries now;
- `ceiling`: expected slower than the latency ceiling while another candidate is not.

Prompt-cache affinity: the prompt-cache stage runs too (its mode, the request's fingerprint),
then the one lookup the plan stage would make (a read), so `affinity` says whether the request
is fingerprinted and which target and key hold its prefix, and the candidates' `affinity` and
order are the ones a real request would get.

Nothing is sent, reserved or claimed: no admission, no key lease, no budget hold, no breaker
probe, no exploration probe (the ordering's probe claim is not run), so an explanation never
changes what the next real request does. Candidates are listed in the route's configured
order, each with its place in the order the strategy would try them (the ordering itself, run
without claiming an exploration probe; none for `weighted`, a fresh draw per request).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from starlette.requests import Request

from core.api.identity import Caller
from core.budgets.enforce import dollars
from core.cache.affinity import Affinities, holder_of
from core.ledger.record import Tags
from core.pipeline.account import Account
from core.pipeline.api import ApiSpec
from core.pipeline.exchange import Exchange
from core.pipeline.prompt_cache import PromptCache
from core.pipeline.route_policy import APIS
from core.pipeline.stages import Read, Resolve, Stage, Validate, ask_of
from core.resilience.dispatch import Dispatcher
from core.routing.demand import demand_of
from core.routing.ordering import order
from core.routing.policy.rules import Policy
from core.routing.registry import Candidate, ModelRegistry, Route
from core.routing.signals import CandidateView, Demand, explain
from core.spend.cost import Pricing
from shared.errors import GatewayError

AnySpec = ApiSpec[Any, Any, Any]
AnyExchange = Exchange[Any, Any, Any]
# chat -> /v1/chat/completions, ...; the Responses API's rules see it as chat (its canonical
# payload is chat's), as its requests do, so its path is not among the routing policy's APIS.
PATHS = {**{api: path for path, api in APIS.items()}, "responses": "/v1/responses"}
REQUEST_ID = "route-explain"
# Skips after which a candidate is still tried: `ceiling` only moves it behind the others.
UNTRIED_OK = frozenset({None, "ceiling"})


@dataclass(frozen=True, slots=True)
class ExplainAsk:
    """Who asks, through which API, with which request (its JSON body, as a client sends it)."""

    api: str  # chat | messages | embeddings | responses
    tenant: str
    tier: str
    tags: Tags
    headers: tuple[tuple[str, str], ...]  # lower-case names
    body: bytes


@dataclass(frozen=True, slots=True)
class CandidateReport:
    view: CandidateView
    skip: str | None  # capability, unpriced, budget, circuit_open, ceiling
    why: str | None  # the planner's message, the budget's name
    weight: float
    rank: int | None = None  # its place in the order tried (1 first); None when never tried


@dataclass(frozen=True, slots=True)
class Explanation:
    model: str
    rule: str
    route: str | None
    strategy: str | None
    ceiling_s: float | None
    input_tokens: int
    max_output_tokens: int | None
    refused: str | None  # a refusing rule's message
    candidates: tuple[CandidateReport, ...]
    affinity: dict[str, Any] | None = None  # the route's switch, the fingerprint's holder

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "rule": self.rule,
            "route": self.route,
            "strategy": self.strategy,
            "latency_ceiling_ms": _ms(self.ceiling_s),
            "estimate": {
                "input_tokens": self.input_tokens,
                "max_output_tokens": self.max_output_tokens,
            },
            "refused": self.refused,
            "affinity": self.affinity,
            "candidates": [_candidate_json(c) for c in self.candidates],
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def _candidate_json(report: CandidateReport) -> dict[str, Any]:
    view = report.view
    return {
        "target": view.label,
        "provider": view.provider,
        "model": view.model,
        "cost_usd": None if view.cost_micros is None else dollars(view.cost_micros),
        "unpriced": view.unpriced,
        "latency_ms": _ms(view.latency_s),
        "error_rate": round(view.error_rate, 6),
        "affinity": view.affinity,
        "score": view.score,
        "weight": report.weight,
        "order": report.rank,
        "skipped": report.skip,
        "why": report.why,
    }


class RouteExplainer:
    """Built once at start-up (core.app) from the objects the pipeline itself uses."""

    def __init__(
        self,
        specs: Mapping[str, AnySpec],
        registry: ModelRegistry,
        policy: Policy | None,
        dispatcher: Dispatcher,
        pricing: Pricing | None,
        affinity: Affinities | None = None,
    ) -> None:
        self._specs = dict(specs)
        self._stages: tuple[Stage, ...] = (Read(), Validate(), Resolve(registry, policy))
        self._prompt_cache = PromptCache(affinity is not None)
        self._dispatcher = dispatcher
        self._pricing = pricing
        self._affinity = affinity

    async def explain(self, ask: ExplainAsk) -> Explanation:
        """The explanation; a GatewayError (the pipeline's own, naming the request's field)
        when the request would be refused before routing (invalid, unknown model)."""
        x = self._exchange(ask)
        read, *rest = self._stages
        before: tuple[Stage, ...] = getattr(x.spec, "before_validate", ())
        try:
            for stage in (read, *before, *rest):
                await stage(x)
        except GatewayError as error:
            if error.code != "policy_refused":
                raise
            return Explanation(
                x.request.model, x.rule or "", None, None, None, 0, None, error.message, ()
            )
        await self._prompt_cache(x)
        if x.affinity is not None and self._affinity is not None:
            await self._affinity.lookup(x.affinity, x.route.name, counted=False)
        return self._routed(x)

    def _exchange(self, ask: ExplainAsk) -> AnyExchange:
        spec = self._specs[ask.api]
        scope = {
            "type": "http",
            "method": "POST",
            "path": PATHS[ask.api],
            "query_string": b"",
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in ask.headers],
        }
        caller = Caller(ask.tenant, ask.tier, REQUEST_ID, _any_model, ask.tags)
        return Exchange(spec, Account(), Request(scope), caller, ask.body)

    def _routed(self, x: AnyExchange) -> Explanation:
        route: Route = x.route
        stream = bool(getattr(x.request, "stream", False))
        holder = holder_of(x.affinity)
        demand = demand_of(x.payload, stream, x.latency_ceiling_s, x.prompt_tokens, holder)
        views = explain(route, self._dispatcher.signals, demand)
        x.tokens = x.spec.estimate(x.request, x.prompt_tokens())
        budgets = self._dispatcher.budgets
        ask = ask_of(x) if budgets is not None and budgets.enabled else None
        reports = []
        weights = route.weights or (1.0,) * len(route.candidates)
        for candidate, view, weight in zip(route.candidates, views, weights, strict=True):
            skip, why = self._capability(x, route, candidate)
            target = candidate.target
            if skip is None and self._pricing is not None and self._pricing.refuses(target):
                skip, why = "unpriced", "the operator refuses unpriced models"
            if skip is None and ask is not None and budgets is not None:
                short = budgets.short_of(ask, target)
                if short is not None:
                    skip, why = "budget", _budget_why(short.name, short.action)
            if skip is None:
                skip = view.skip
            reports.append(CandidateReport(view, skip, why, weight))
        ranked = self._ranked(route, demand, reports)
        ceiling = demand.ceiling_s if demand.ceiling_s is not None else route.ceiling_s
        return Explanation(
            x.request.model,
            x.rule or "",
            route.name,
            route.strategy,
            ceiling,
            demand.input_tokens,
            demand.max_output_tokens,
            None,
            ranked,
            {
                "enabled": route.affinity,
                "fingerprinted": x.affinity is not None,
                "holder": holder.label if holder is not None else None,
                "key": holder.key_id if holder is not None else None,
            },
        )

    def _ranked(
        self, route: Route, demand: Demand, reports: list[CandidateReport]
    ) -> tuple[CandidateReport, ...]:
        """Each candidate's place in the strategy's order (core.routing.ordering, claiming no
        probe), counting only those the dispatcher would try; none for `weighted`, whose order
        is a fresh weighted draw per request."""
        if route.strategy == "weighted" and len(route.candidates) > 1:
            return tuple(reports)
        signals = self._dispatcher.signals
        ordered = order(route, signals, random.Random(0), demand, explore=False)
        position = {id(c): i for i, c in enumerate(ordered.candidates)}
        tried = sorted(
            (position[id(c)], i)
            for i, (c, r) in enumerate(zip(route.candidates, reports, strict=True))
            if r.skip in UNTRIED_OK
        )
        out = list(reports)
        for rank, (_, i) in enumerate(tried, start=1):
            out[i] = replace(out[i], rank=rank)
        return tuple(out)

    @staticmethod
    def _capability(
        x: AnyExchange, route: Route, candidate: Candidate
    ) -> tuple[str | None, str | None]:
        """The API's planner on the candidate alone: what it refuses, it refuses in the route."""
        alone = replace(route, candidates=(candidate,), weights=())
        try:
            steps = x.spec.plan(alone, x.request)
        except GatewayError as error:
            return "capability", error.message
        return (None, None) if steps else ("capability", "the planner left it out")


def _budget_why(name: str, action: str) -> str:
    what = "would re-route the request" if action == "downgrade" else "refuses it"
    return f"the budget '{name}' has no room for its estimate ({action}: {what})"


def _any_model(name: str) -> bool:
    """An explanation is the operator's: no token restricts the models it may look at."""
    return True
