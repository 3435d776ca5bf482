"""Resolves a requested model name (model, alias, or provider/model) to ordered targets.

`provider/<name>` (for providers with allow_any_model) takes a name the tenant chose: those
routes are cached in an LRU of DYNAMIC_ROUTES entries of names up to CACHED_NAME_CHARS
(building one is cheap; the cache only saves the capability lookup), and their targets are
marked dynamic so breakers, latency and metrics track them per provider rather than per name.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from core.providers.adapters.base import Capabilities, Target
from core.providers.provider import Provider
from core.providers.upstream import Upstream
from shared.config import Config, ModelConfig, TargetConfig
from shared.config_strategy import (
    DEFAULT_AFFINITY_MARGIN,
    DEFAULT_WEIGHTS,
    ScoreWeights,
    StrategyConfig,
)

DYNAMIC_ROUTES = 1024
# Longer names are served (if the request validator lets them through) but never cached, so
# the cache holds at most DYNAMIC_ROUTES * CACHED_NAME_CHARS characters of tenant input.
CACHED_NAME_CHARS = 256


@dataclass(frozen=True, slots=True)
class Candidate:
    target: Target
    upstream: Upstream
    capabilities: Capabilities


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    candidates: tuple[Candidate, ...]
    strict_params: bool
    # True when every candidate serves every feature and param: planning can be skipped.
    unrestricted: bool
    strategy: str = "fallback"  # core.routing.ordering
    weights: tuple[float, ...] = ()
    ceiling_s: float | None = None  # latency_ceiling_ms, in seconds
    score_weights: ScoreWeights = DEFAULT_WEIGHTS
    prompt_cache: str = "markers"  # off | markers | auto (core.pipeline.prompt_cache)
    affinity: bool = True  # prompt-cache affinity (core.cache.affinity, core.routing.ordering)
    affinity_margin: float = DEFAULT_AFFINITY_MARGIN


@dataclass(frozen=True, slots=True)
class ModelRoutes:
    default: Route
    tiers: dict[str, Route]

    def for_tier(self, tier: str) -> Route:
        return self.tiers.get(tier, self.default) if self.tiers else self.default


def _unrestricted(caps: Capabilities) -> bool:
    return (
        caps.params is None
        and caps.max_n is None
        and caps.max_context is None
        and all(
            (
                caps.stream,
                caps.tools,
                caps.vision,
                caps.json_schema,
                caps.json_object,
                caps.image_urls,
            )
        )
    )


class ModelRegistry:
    def __init__(self, config: Config, providers: Mapping[str, Provider]) -> None:
        self._config = config
        self._providers = providers
        self._routes: dict[str, ModelRoutes] = {}
        self._dynamic: OrderedDict[str, Route] = OrderedDict()
        for name, model in config.models.items():
            self._routes[name] = ModelRoutes(
                self._model_route(name, model, model.targets),
                {tier: self._model_route(name, model, t) for tier, t in model.tiers.items()},
            )
        for alias, model_name in config.aliases.items():
            self._routes[alias] = self._routes[model_name]
        # routing.routes: what policy rules route to by name (core.routing.policy).
        self.named: dict[str, Route] = {
            name: self._configured_route(name, r.targets, r.params, r.routing, r.prompt_cache)
            for name, r in config.routing.routes.items()
        }
        self.created = 1_700_000_000

    def _model_route(
        self, name: str, model: ModelConfig, targets: tuple[TargetConfig, ...]
    ) -> Route:
        return self._configured_route(
            name, targets, model.params, model.routing, model.prompt_cache
        )

    def _configured_route(
        self,
        name: str,
        targets: tuple[TargetConfig, ...],
        params: str,
        routing: StrategyConfig,
        prompt_cache: str = "markers",
    ) -> Route:
        """A model's (or a tier's, or a named) route: its targets, strategy and weights."""
        candidates = tuple(self._candidate(t.provider, t.model) for t in targets)
        route = self._route(name, candidates, params == "strict")
        return Route(
            route.name,
            route.candidates,
            route.strict_params,
            route.unrestricted,
            routing.strategy,
            tuple(t.weight for t in targets),
            routing.latency_ceiling_s,
            routing.score_weights,
            prompt_cache,
            routing.affinity,
            routing.affinity_margin,
        )

    def _candidate(self, provider_name: str, model: str, dynamic: bool = False) -> Candidate:
        provider = self._providers[provider_name]
        key = provider.api_keys[0] if provider.api_keys else None
        target = Target(provider, model, key, dynamic)
        return Candidate(target, provider.upstream, provider.upstream.capabilities(target))

    @staticmethod
    def _route(name: str, candidates: tuple[Candidate, ...], strict: bool) -> Route:
        unrestricted = all(_unrestricted(c.capabilities) for c in candidates)
        return Route(name, candidates, strict, unrestricted)

    def resolve(self, name: str, tier: str = "default") -> Route | None:
        routes = self._routes.get(name)
        if routes is not None:
            return routes.for_tier(tier)
        route = self._dynamic.get(name)
        if route is not None:
            self._dynamic.move_to_end(name)
            return route
        provider_name, sep, model = name.partition("/")
        provider = self._providers.get(provider_name)
        if not sep or not model or provider is None or not provider.allow_any_model:
            return None
        route = self._route(name, (self._candidate(provider_name, model, dynamic=True),), True)
        if len(name) <= CACHED_NAME_CHARS:
            self._dynamic[name] = route
            if len(self._dynamic) > DYNAMIC_ROUTES:  # bounded: names come from tenants
                self._dynamic.popitem(last=False)
        return route

    def dynamic_routes(self) -> int:
        """Cached `provider/<name>` routes (exported as a metric; at most DYNAMIC_ROUTES)."""
        return len(self._dynamic)

    def target_labels(self) -> list[str]:
        """Every configured target, across models and tiers, and `<provider>/*` for each
        provider that serves any model name: the only health labels there will ever be."""
        labels: set[str] = set()
        for routes in self._routes.values():
            for route in (routes.default, *routes.tiers.values()):
                labels.update(c.target.health_label for c in route.candidates)
        for route in self.named.values():
            labels.update(c.target.health_label for c in route.candidates)
        labels.update(f"{n}/*" for n, p in self._providers.items() if p.allow_any_model)
        return sorted(labels)

    def health_checked(self) -> list[tuple[Candidate, float]]:
        """Each target of a route with `health_check_interval` (models, their tiers and the
        routing policy's named routes), once, at the shortest interval any route asks for."""
        found: dict[str, tuple[Candidate, float]] = {}
        configured = [
            (model.routing.health_check_s, (r.default, *r.tiers.values()))
            for r, model in ((self._routes[n], m) for n, m in self._config.models.items())
        ]
        configured += [
            (self._config.routing.routes[name].routing.health_check_s, (route,))
            for name, route in self.named.items()
        ]
        for interval, routes in configured:
            if interval is None:
                continue
            for route in routes:
                for candidate in route.candidates:
                    label = candidate.target.health_label
                    if label not in found or interval < found[label][1]:
                        found[label] = (candidate, interval)
        return list(found.values())

    def listing(self) -> list[tuple[str, str]]:
        """(model id, owner) for every configured model and alias."""
        out = []
        for name, model in self._config.models.items():
            out.append((name, model.targets[0].provider))
        for alias, model_name in self._config.aliases.items():
            out.append((alias, self._config.models[model_name].targets[0].provider))
        return out
