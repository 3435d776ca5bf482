"""`cache`: the exact response cache (core.cache): backend limits and who may use it.

One section holds it all, so the precedence is visible in one place: a tenant's setting wins
over a named route's, which wins over a model's, which wins over the section's own defaults.
Each of `models`, `routes` and `tenants` maps a name to `{enabled, ttl, max_entry_bytes,
coalesce}` (any subset; what is left out is inherited). Off unless enabled somewhere: a cache
shared by default is the failure this gateway avoids (entries are scoped per tenant in any
case). `coalesce` (request coalescing, core.cache.coalesce) applies only where the cache is
enabled, and is on there unless turned off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared import configparse as cp
from shared.configparse import ConfigError

_DAY_S = 86400.0


@dataclass(frozen=True, slots=True)
class CacheRule:
    """What one model, route or tenant overrides; None: inherited."""

    enabled: bool | None = None
    ttl_s: float | None = None
    max_entry_bytes: int | None = None
    coalesce: bool | None = None


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """The settings that apply to one request, once merged."""

    enabled: bool
    ttl_s: float
    max_entry_bytes: int
    coalesce: bool = False  # only where enabled


@dataclass(frozen=True)
class CacheConfig:
    enabled: bool = False
    ttl_s: float = 300.0  # default TTL of an entry
    max_bytes: int = 64 * 1024 * 1024  # the in-memory backend's total size cap
    max_entry_bytes: int = 1024 * 1024  # a larger response is not stored
    coalesce: bool = True  # identical concurrent requests share one upstream call
    models: dict[str, CacheRule] = field(default_factory=dict)
    routes: dict[str, CacheRule] = field(default_factory=dict)
    tenants: dict[str, CacheRule] = field(default_factory=dict)

    @property
    def used(self) -> bool:
        """True when any request could be cached: the stage is left out otherwise."""
        rules = (*self.models.values(), *self.routes.values(), *self.tenants.values())
        return self.enabled or any(rule.enabled for rule in rules)

    def policy(self, tenant: str, route: str, model: str) -> CachePolicy:
        """The merged settings for a request (tenant > route > model > defaults)."""
        enabled, ttl, entry = self.enabled, self.ttl_s, self.max_entry_bytes
        coalesce = self.coalesce
        for rule in (self.models.get(model), self.routes.get(route), self.tenants.get(tenant)):
            if rule is None:
                continue
            enabled = enabled if rule.enabled is None else rule.enabled
            ttl = ttl if rule.ttl_s is None else rule.ttl_s
            entry = entry if rule.max_entry_bytes is None else rule.max_entry_bytes
            coalesce = coalesce if rule.coalesce is None else rule.coalesce
        return CachePolicy(enabled, ttl, entry, enabled and coalesce)


_RULE_KEYS = frozenset(("enabled", "ttl", "max_entry_bytes", "coalesce"))
_CACHE_KEYS = frozenset((*_RULE_KEYS, "max_bytes", "models", "routes", "tenants"))


def _ttl(s: dict[str, Any], path: str, default: float) -> float:
    ttl = cp.duration(s, "ttl", path, default)
    if not 0 < ttl <= 30 * _DAY_S:
        raise ConfigError(f"{path}.ttl: expected a duration from 1s to 30d")
    return ttl


def _rule(raw: Any, path: str) -> CacheRule:
    s = cp.section(raw, path, _RULE_KEYS)
    return CacheRule(
        enabled=cp.boolean(s, "enabled", path, False) if "enabled" in s else None,
        ttl_s=_ttl(s, path, 0.0) if "ttl" in s else None,
        max_entry_bytes=cp.size(s, "max_entry_bytes", path, 1) if "max_entry_bytes" in s else None,
        coalesce=cp.boolean(s, "coalesce", path, True) if "coalesce" in s else None,
    )


def _rules(raw: Any, path: str, known: frozenset[str] | None) -> dict[str, CacheRule]:
    entries = cp.named(raw, path, "name to {enabled, ttl, max_entry_bytes, coalesce}")
    rules = {}
    for name, entry in entries.items():
        if not isinstance(name, str) or (known is not None and name not in known):
            raise ConfigError(f"{path}.{name}: not a configured name")
        rules[name] = _rule(entry, f"{path}.{name}")
    return rules


def parse_cache(raw: Any, models: frozenset[str], routes: frozenset[str] | None) -> CacheConfig:
    """`models` must name configured models or aliases; `routes` (None: not checked) named
    routes; tenants are free names (tenants live in tokens, not in the file)."""
    path = "cache"
    s = cp.section(raw, path, _CACHE_KEYS)
    d = CacheConfig()
    return CacheConfig(
        enabled=cp.boolean(s, "enabled", path, d.enabled),
        ttl_s=_ttl(s, path, d.ttl_s),
        max_bytes=cp.size(s, "max_bytes", path, d.max_bytes),
        max_entry_bytes=cp.size(s, "max_entry_bytes", path, d.max_entry_bytes),
        coalesce=cp.boolean(s, "coalesce", path, d.coalesce),
        models=_rules(s.get("models"), f"{path}.models", models),
        routes=_rules(s.get("routes"), f"{path}.routes", routes),
        tenants=_rules(s.get("tenants"), f"{path}.tenants", None),
    )


@dataclass(frozen=True)
class IdempotencyConfig:
    """`idempotency`: how long a request's result answers retries carrying its
    Idempotency-Key (core.cache.idempotency), and how long its in-flight marker may outlive a
    replica that died holding it."""

    enabled: bool = True
    ttl_s: float = _DAY_S
    in_flight_ttl_s: float = 600.0
    max_bytes: int = 8 * 1024 * 1024  # a larger result is not kept (a retry runs again)


_IDEMPOTENCY_KEYS = frozenset(("enabled", "ttl", "in_flight_ttl", "max_bytes"))


def parse_idempotency(raw: Any) -> IdempotencyConfig:
    path = "idempotency"
    s = cp.section(raw, path, _IDEMPOTENCY_KEYS)
    d = IdempotencyConfig()
    ttl = cp.duration(s, "ttl", path, d.ttl_s)
    if not 1 <= ttl <= 30 * _DAY_S:
        raise ConfigError(f"{path}.ttl: expected a duration from 1s to 30d")
    in_flight = cp.duration(s, "in_flight_ttl", path, d.in_flight_ttl_s)
    if not 1 <= in_flight <= _DAY_S:
        raise ConfigError(f"{path}.in_flight_ttl: expected a duration from 1s to 1d")
    return IdempotencyConfig(
        enabled=cp.boolean(s, "enabled", path, d.enabled),
        ttl_s=ttl,
        in_flight_ttl_s=in_flight,
        max_bytes=cp.size(s, "max_bytes", path, d.max_bytes),
    )
