"""The whole of interlock.yaml: the edge's sections plus the core's (providers, models,
limits, prices, budgets, routing, cache, tracing ...), as the core and the CLI load it.

Imported through shared.config, which loads this module on first use of one of its names: an
edge process never does. With no file, `embedded_defaults()` gives a working stack (mock
provider, plus any provider whose API key is in the environment) so `make run` needs no set-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared import configparse as cp
from shared.config_budgets import BudgetConfig, parse_budgets
from shared.config_cache import CacheConfig, IdempotencyConfig, parse_cache, parse_idempotency
from shared.config_core import (
    CoreConfig,
    ProviderConfig,
    RateLimit,
    parse_core,
    parse_providers,
    parse_rate_limit,
)
from shared.config_edge import (
    CORE_SECTIONS,
    TOP_LEVEL,
    EdgeTierConfig,
    edge_fields,
)
from shared.config_ledger import LedgerConfig, parse_ledger
from shared.config_metrics import MetricsConfig, parse_metrics
from shared.config_models import ModelConfig, parse_aliases, parse_models
from shared.config_prices import PricesConfig, parse_prices
from shared.config_routing import RoutingConfig, parse_routing
from shared.config_tracing import TracingConfig, parse_tracing
from shared.configparse import ConfigError


@dataclass(frozen=True)
class StateConfig:
    redis_url: str | None  # None: in-memory (single process)
    # When Redis is unreachable: per-process limits (True, fail_open) or 503 (fail_closed).
    fail_open: bool = field(metadata=cp.read_from("on_redis_down"))
    # Core replicas sharing the Redis: in a fail-open outage each one's local buckets get
    # 1/replicas of every shared limit, so together they stay near it.
    replicas: int = 1
    # redis_url is one node of a Redis Cluster: the slot map is read from it, and every node
    # is reached with its credentials and TLS settings.
    cluster: bool = False


@dataclass(frozen=True)
class LimitsConfig:
    tiers: dict[str, RateLimit]
    tenants: dict[str, RateLimit]  # per-tenant overrides take precedence over the tier
    default_tier: str | None = None  # for tokens whose tier is not configured
    # With Redis, busy tenants are admitted from leases of their buckets (core.limits.leases):
    # off, every request is one Redis call and x-ratelimit-remaining is never stale.
    leases: bool = True

    def tier_for(self, tier: str) -> str | None:
        """The configured tier a token's tier resolves to; None when it is unknown and there
        is no default tier (the core refuses such callers: never "unlimited")."""
        return tier if tier in self.tiers else self.default_tier

    def for_caller(self, tenant: str, tier: str) -> RateLimit | None:
        """The caller's limits; None only when it has no override and no tiers exist."""
        override = self.tenants.get(tenant)
        if override is not None:
            return override
        resolved = self.tier_for(tier)
        return self.tiers[resolved] if resolved is not None else None


@dataclass(frozen=True)
class Config(EdgeTierConfig):
    """The whole file: the edge's sections (EdgeTierConfig) plus the core's."""

    core: CoreConfig
    providers: dict[str, ProviderConfig]
    models: dict[str, ModelConfig]
    aliases: dict[str, str]
    state: StateConfig = StateConfig(None, True)
    limits: LimitsConfig = LimitsConfig({}, {})
    prices: PricesConfig = field(default_factory=PricesConfig)
    budgets: tuple[BudgetConfig, ...] = ()
    # Off for a Config built by hand; parse_config reads the `ledger:` section (on by default).
    ledger: LedgerConfig = field(default_factory=lambda: LedgerConfig(enabled=False))
    # Named routes and the policy rules that pick one per request (core.routing.policy).
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)  # core.cache
    idempotency: IdempotencyConfig = field(default_factory=IdempotencyConfig)
    tracing: TracingConfig = field(default_factory=TracingConfig)  # core.observe.tracing
    metrics: MetricsConfig = field(default_factory=MetricsConfig)  # core.observe


_STATE = cp.keys_of(StateConfig)
_LIMITS = cp.keys_of(LimitsConfig)


# Providers `make run` adds when their key is in the environment:
# (env var, provider name, settings, example models). Any model works as "<provider>/<model>".
_ENV_PROVIDERS: tuple[tuple[str, str, dict[str, Any], tuple[str, ...]], ...] = (
    ("OPENAI_API_KEY", "openai", {"kind": "openai"}, ("gpt-4o-mini", "gpt-4.1")),
    ("ANTHROPIC_API_KEY", "anthropic", {"kind": "anthropic"}, ("claude-sonnet-4-5",)),
    ("GEMINI_API_KEY", "gemini", {"kind": "gemini"}, ("gemini-2.5-flash",)),
    ("MISTRAL_API_KEY", "mistral", {"kind": "openai", "options": {"preset": "mistral"}}, ()),
    ("GROQ_API_KEY", "groq", {"kind": "openai", "options": {"preset": "groq"}}, ()),
    ("DEEPSEEK_API_KEY", "deepseek", {"kind": "openai", "options": {"preset": "deepseek"}}, ()),
)


def embedded_defaults(env: dict[str, str]) -> dict[str, Any]:
    """The zero-set-up config: the mock provider, plus real providers whose keys are set."""
    providers: dict[str, Any] = {"mock": {"kind": "mock", "allow_any_model": True}}
    models: dict[str, Any] = {
        "mock-1": {"provider": "mock", "model": "mock-1"},
        "mock-large": {"provider": "mock", "model": "mock-large"},
    }
    for variable, name, settings, examples in _ENV_PROVIDERS:
        if not env.get(variable):
            continue
        providers[name] = {**settings, "api_key": f"${{{variable}}}", "allow_any_model": True}
        if name == "openai" and env.get("OPENAI_BASE_URL"):
            providers[name]["base_url"] = "${OPENAI_BASE_URL}"
        for model in examples:
            models[model] = {"provider": name, "model": model}
    return {"providers": providers, "models": models, "aliases": {"default": "mock-1"}}


def parse_config(raw: Any, source: str, env: dict[str, str]) -> Config:
    top = cp.section(raw, "config", TOP_LEVEL)
    edge = edge_fields(top, env)
    core = {key: cp.interpolate(top[key], key, env) for key in CORE_SECTIONS if key in top}
    providers = parse_providers(core.get("providers"))
    models = parse_models(core.get("models"), set(providers))
    aliases = parse_aliases(core.get("aliases"), models)
    names = frozenset((*models, *aliases))
    budgets = parse_budgets(core.get("budgets"), names)
    budget_names = frozenset(b.name for b in budgets)
    routing = parse_routing(core.get("routing"), set(providers), names, budget_names)
    return Config(
        **edge,
        source=source,
        core=parse_core(core.get("core"), env),
        providers=providers,
        models=models,
        aliases=aliases,
        state=_state(core.get("state"), env),
        limits=_limits(core.get("limits")),
        prices=parse_prices(core.get("prices")),
        budgets=budgets,
        ledger=parse_ledger(core.get("ledger"), edge["state_dir"]),
        routing=routing,
        cache=parse_cache(core.get("cache"), names, frozenset(routing.routes)),
        idempotency=parse_idempotency(core.get("idempotency")),
        tracing=parse_tracing(core.get("tracing"), env),
        metrics=parse_metrics(core.get("metrics")),
    )


def _state(raw: Any, env: dict[str, str]) -> StateConfig:
    s = cp.section(raw, "state", _STATE)
    url = cp.optional_string(s, "redis_url", "state") or env.get("REDIS_URL") or None
    if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("state.redis_url: expected a redis://, rediss:// or unix:// URL")
    mode = cp.string(s, "on_redis_down", "state", "fail_open")
    if mode not in ("fail_open", "fail_closed"):
        raise ConfigError("state.on_redis_down: expected fail_open or fail_closed")
    replicas = cp.integer(s, "replicas", "state", 1, 1, 10_000)
    cluster = cp.boolean(s, "cluster", "state", False)
    if cluster and url is None:
        raise ConfigError("state.cluster: needs state.redis_url (any node of the cluster)")
    return StateConfig(
        redis_url=url, fail_open=mode == "fail_open", replicas=replicas, cluster=cluster
    )


def _rate_limits(raw: Any, path: str) -> dict[str, RateLimit]:
    entries = cp.named(raw, path, "name to {rpm, tpm}")
    return {str(name): parse_rate_limit(entry, f"{path}.{name}") for name, entry in entries.items()}


def _limits(raw: Any) -> LimitsConfig:
    s = cp.section(raw, "limits", _LIMITS)
    tiers = _rate_limits(s.get("tiers"), "limits.tiers")
    default_tier = cp.optional_string(s, "default_tier", "limits")
    if default_tier is not None and default_tier not in tiers:
        raise ConfigError(f"limits.default_tier: no tier named {default_tier!r} in limits.tiers")
    return LimitsConfig(
        tiers=tiers,
        tenants=_rate_limits(s.get("tenants"), "limits.tenants"),
        default_tier=default_tier,
        leases=cp.boolean(s, "leases", "limits", True),
    )
