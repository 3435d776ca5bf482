"""Resolves a requested model name (model, alias, or provider/model) to ordered targets."""

from __future__ import annotations

from dataclasses import dataclass

from core.adapters.base import Capabilities, Target
from core.upstream import Upstream
from shared.config import Config


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


def _unrestricted(caps: Capabilities) -> bool:
    return (
        caps.params is None
        and caps.max_n is None
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
    def __init__(self, config: Config, upstreams: dict[str, Upstream]) -> None:
        self._config = config
        self._upstreams = upstreams
        self._routes: dict[str, Route] = {}
        for name, model in config.models.items():
            candidates = tuple(self._candidate(t.provider, t.model) for t in model.targets)
            self._routes[name] = self._route(name, candidates, model.params == "strict")
        for alias, model_name in config.aliases.items():
            self._routes[alias] = self._routes[model_name]
        self.created = 1_700_000_000

    def _candidate(self, provider_name: str, model: str) -> Candidate:
        provider = self._config.providers[provider_name]
        target = Target(provider, model, provider.api_keys[0] if provider.api_keys else None)
        upstream = self._upstreams[provider_name]
        return Candidate(target, upstream, upstream.capabilities(target))

    @staticmethod
    def _route(name: str, candidates: tuple[Candidate, ...], strict: bool) -> Route:
        unrestricted = all(_unrestricted(c.capabilities) for c in candidates)
        return Route(name, candidates, strict, unrestricted)

    def resolve(self, name: str) -> Route | None:
        route = self._routes.get(name)
        if route is not None:
            return route
        provider_name, sep, model = name.partition("/")
        provider = self._config.providers.get(provider_name)
        if not sep or not model or provider is None or not provider.allow_any_model:
            return None
        route = self._route(name, (self._candidate(provider_name, model),), True)
        if len(self._routes) < 10_000:  # bounded: names come from tenants
            self._routes[name] = route
        return route

    def listing(self) -> list[tuple[str, str]]:
        """(model id, owner) for every configured model and alias."""
        out = []
        for name, model in self._config.models.items():
            out.append((name, model.targets[0].provider))
        for alias, model_name in self._config.aliases.items():
            out.append((alias, self._config.models[model_name].targets[0].provider))
        return out
