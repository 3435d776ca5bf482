"""How a route orders its targets: the strategy and its options, as a route's config gives them.

One parser for every place that declares a route (a model in `models`, a named route of the
routing policy), so the keys and their errors are the same everywhere:

  strategy: fallback | weighted | latency (least_latency, its old name) | cost | score
  latency_ceiling_ms: 800        # targets expected slower are tried only when nothing else is
  score_weights: {cost: 1, latency: 1, errors: 1, affinity: 0}   # strategy: score only
  health_check_interval: 60s     # off by default: a 1-token request to each target idle this long
  affinity: on                   # prompt-cache affinity (core.cache.affinity): on by default
  affinity_margin: 0.5           # how much worse the holder may look and still go first
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared import configparse as cp
from shared.configparse import ConfigError

STRATEGIES = ("fallback", "weighted", "latency", "least_latency", "cost", "score")
ALIASES = {"least_latency": "latency"}
STRATEGY_KEYS = (
    "strategy",
    "latency_ceiling_ms",
    "score_weights",
    "health_check_interval",
    "affinity",
    "affinity_margin",
)
MAX_CEILING_MS = 3_600_000.0
MIN_HEALTH_CHECK_S = 1.0
DEFAULT_AFFINITY_MARGIN = 0.5
MAX_AFFINITY_MARGIN = 100.0


@dataclass(frozen=True, slots=True)
class ScoreWeights:
    """Weights of the `score` strategy's terms (each normalised to [0, 1] across a route's
    candidates; a lower score is tried earlier, affinity counts in the target's favour)."""

    cost: float = 1.0
    latency: float = 1.0
    errors: float = 1.0
    affinity: float = 1.0


DEFAULT_WEIGHTS = ScoreWeights()


@dataclass(frozen=True, slots=True)
class StrategyConfig:
    strategy: str = "fallback"  # canonical name (aliases resolved)
    latency_ceiling_s: float | None = None
    score_weights: ScoreWeights = DEFAULT_WEIGHTS
    health_check_s: float | None = None  # active checks of idle targets; None: off
    # Prompt-cache affinity: requests sharing a cached prefix prefer the target and key that
    # hold it, unless the holder looks worse than the best other by more than the margin.
    affinity: bool = True
    affinity_margin: float = DEFAULT_AFFINITY_MARGIN


def parse_strategy(s: dict[str, Any], path: str) -> StrategyConfig:
    """The strategy keys of section `s` (found at `path`); other keys are the caller's."""
    strategy = s.get("strategy", "fallback")
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise ConfigError(f"{path}.strategy: expected one of {', '.join(STRATEGIES)}")
    strategy = ALIASES.get(strategy, strategy)
    ceiling = s.get("latency_ceiling_ms")
    if ceiling is not None and (
        not isinstance(ceiling, int | float)
        or isinstance(ceiling, bool)
        or not 0 < ceiling <= MAX_CEILING_MS
    ):
        raise ConfigError(
            f"{path}.latency_ceiling_ms: expected milliseconds in (0, {MAX_CEILING_MS:.0f}]"
        )
    weights = DEFAULT_WEIGHTS
    if "score_weights" in s:
        if strategy != "score":
            raise ConfigError(f"{path}.score_weights: only used with strategy: score")
        weights = _weights(s["score_weights"], f"{path}.score_weights")
    check = None
    if s.get("health_check_interval") is not None:
        check = cp.duration(s, "health_check_interval", path, 0.0)
        if check < MIN_HEALTH_CHECK_S:
            raise ConfigError(f"{path}.health_check_interval: at least 1s (it sends requests)")
    affinity, margin = _affinity(s, path)
    return StrategyConfig(
        strategy,
        float(ceiling) / 1000 if ceiling is not None else None,
        weights,
        check,
        affinity,
        margin,
    )


def _affinity(s: dict[str, Any], path: str) -> tuple[bool, float]:
    """`affinity: on | off` (YAML may hand over a boolean) and `affinity_margin` (>= 0)."""
    raw = s.get("affinity", True)
    if isinstance(raw, str) and raw.strip().lower() in ("on", "off"):
        raw = raw.strip().lower() == "on"
    if not isinstance(raw, bool):
        raise ConfigError(f"{path}.affinity: expected on or off")
    margin = s.get("affinity_margin", DEFAULT_AFFINITY_MARGIN)
    if (
        not isinstance(margin, int | float)
        or isinstance(margin, bool)
        or not 0 <= margin <= MAX_AFFINITY_MARGIN
    ):
        raise ConfigError(
            f"{path}.affinity_margin: expected a number in [0, {MAX_AFFINITY_MARGIN:.0f}]"
        )
    return raw, float(margin)


def _weights(raw: Any, path: str) -> ScoreWeights:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of cost, latency, errors, affinity")
    known = ScoreWeights.__dataclass_fields__
    values: dict[str, float] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{path}.{key}: unknown weight (known: {', '.join(known)})")
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1e6:
            raise ConfigError(f"{path}.{key}: expected a number >= 0")
        values[str(key)] = float(value)
    weights = ScoreWeights(**{k: values.get(k, 0.0) for k in known})
    if not any((weights.cost, weights.latency, weights.errors, weights.affinity)):
        raise ConfigError(f"{path}: at least one weight must be above 0")
    return weights
