"""The `models` and `aliases` sections: what a requested model name can be served by.

A model lists targets (provider + upstream model id, optional weight), a strategy for ordering
them per request, optional per-tier target lists (a paid tier may fall back to a premium model,
a free tier to a cheap one), and how unsupported params are handled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared import configparse as cp
from shared.config_strategy import STRATEGIES, STRATEGY_KEYS, StrategyConfig, parse_strategy
from shared.configparse import ConfigError
from shared.names import model_name_problem

__all__ = ["STRATEGIES", "ModelConfig", "TargetConfig", "parse_aliases", "parse_models"]


@dataclass(frozen=True)
class TargetConfig:
    provider: str
    model: str
    weight: float = 1.0


_TARGET = cp.keys_of(TargetConfig)


@dataclass(frozen=True)
class ModelConfig:
    name: str = field(metadata=cp.read_from())  # the key it is filed under in `models`
    # A list of targets, or one target's `provider` (and `model`, default: the name) inline.
    targets: tuple[TargetConfig, ...] = field(metadata=cp.read_from("targets", "provider", "model"))
    # strict: a param no target can honour is a 400 naming it; lenient: dropped and reported
    # in the x-interlock-dropped-params response header.
    params: str = "strict"
    # fallback: in order; weighted: random by weight; latency: fastest expected first; cost:
    # cheapest for the request first; score: weighted cost/latency/errors/affinity
    # (shared.config_strategy, which also reads latency_ceiling_ms and score_weights).
    strategy: str = field(
        default="fallback",
        metadata=cp.read_from(*STRATEGY_KEYS),
    )
    tiers: dict[str, tuple[TargetConfig, ...]] = field(default_factory=dict)
    routing: StrategyConfig = field(default=StrategyConfig(), metadata=cp.read_from())
    # Provider prompt caching (core.pipeline.prompt_cache): markers keeps the client's marks
    # only; auto also places breakpoints on the longest stable prefix; off removes every mark.
    prompt_cache: str = "markers"


PROMPT_CACHE_MODES = ("off", "markers", "auto")


def parse_prompt_cache(s: dict[str, Any], path: str) -> str:
    mode = cp.string(s, "prompt_cache", path, "markers")
    if mode not in PROMPT_CACHE_MODES:
        raise ConfigError(f"{path}.prompt_cache: expected off, markers or auto")
    return mode


_MODEL = cp.keys_of(ModelConfig)


def _targets(
    raw: Any, path: str, default_model: str, providers: set[str]
) -> tuple[TargetConfig, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{path}: expected a non-empty list")
    out = []
    for i, entry in enumerate(raw):
        where = f"{path}[{i}]"
        t = cp.section(entry, where, _TARGET)
        provider = cp.string(t, "provider", where)
        if provider not in providers:
            raise ConfigError(f"{where}.provider: no provider named {provider!r}")
        weight = t.get("weight", 1.0)
        if not isinstance(weight, int | float) or isinstance(weight, bool) or weight <= 0:
            raise ConfigError(f"{where}.weight: expected a positive number")
        out.append(
            TargetConfig(provider, cp.string(t, "model", where, default_model), float(weight))
        )
    return tuple(out)


def parse_models(raw: Any, providers: set[str]) -> dict[str, ModelConfig]:
    out = {}
    for name, entry in cp.named(raw, "models", "model name to targets").items():
        path = f"models.{name}"
        _check_name(name, path)
        s = cp.section(entry, path, _MODEL)
        if "targets" in s:
            if "provider" in s or "model" in s:
                raise ConfigError(f"{path}: use either targets or provider/model, not both")
            targets = _targets(s["targets"], f"{path}.targets", str(name), providers)
        else:
            single = {"provider": s.get("provider"), "model": s.get("model", name)}
            provider = cp.string(single, "provider", path)
            if provider not in providers:
                raise ConfigError(f"{path}.provider: no provider named {provider!r}")
            targets = (TargetConfig(provider, cp.string(single, "model", path)),)
        params = cp.string(s, "params", path, "strict")
        if params not in ("strict", "lenient"):
            raise ConfigError(f"{path}.params: expected strict or lenient")
        routing = parse_strategy(s, path)
        tiers_raw = cp.named(s.get("tiers") or None, f"{path}.tiers", "tier name to targets")
        tiers = {
            str(tier): _targets(value, f"{path}.tiers.{tier}", str(name), providers)
            for tier, value in tiers_raw.items()
        }
        out[str(name)] = ModelConfig(
            str(name),
            targets,
            params,
            routing.strategy,
            tiers,
            routing,
            parse_prompt_cache(s, path),
        )
    return out


def parse_aliases(raw: Any, models: dict[str, ModelConfig]) -> dict[str, str]:
    out = {}
    for alias, model in cp.named(raw, "aliases", "alias to model name").items():
        _check_name(alias, f"aliases.{alias}")
        if not isinstance(model, str) or model not in models:
            raise ConfigError(f"aliases.{alias}: {model!r} is not a configured model")
        if alias in models:
            raise ConfigError(f"aliases.{alias}: clashes with a model of the same name")
        out[str(alias)] = model
    return out


def _check_name(name: object, path: str) -> None:
    """Configured names follow the rule clients are held to, or they could never be called."""
    problem = model_name_problem(name) if isinstance(name, str) else "expected a string"
    if problem is not None:
        raise ConfigError(f"{path}: not a usable model name ({problem})")
