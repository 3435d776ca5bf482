"""`routing`: named routes and the ordered policy rules that pick one per request (issue 12).

routing:
  headers: [x-priority]           # request headers rules may read (header.<name>)
  timezone: Europe/Paris          # for hour / weekday / time (default UTC)
  content_max_chars: 2000         # content conditions scan at most this much of the last
                                  # user message; 0 (the default) turns them off
  routes:
    long-context:                 # targets as in `models` (a list), and a strategy
      targets: [{provider: gemini, model: gemini-2.5-pro}, {provider: deepseek}]
      strategy: fallback
      params: lenient             # strict (default) or lenient, as for a model
  rules:                          # in order; the first rule whose `when` holds decides
    - id: long-prompts            # 1-64 of A-Z a-z 0-9 . _ - (sent in x-interlock-route)
      when: {prompt_tokens: {gt: 8000}}
      route: long-context
    - id: free-tier
      when: {tier: free}
      model: mock-small           # rewrite to a model or alias (re-resolved for the tier)
      cap: {max_tokens: 1024}
    - id: realtime
      when: {header.x-priority: realtime}
      route: fast
      latency_ceiling_ms: 200
    - id: closed
      when: {weekday: {in: [sat, sun]}}
      refuse: "the batch gateway is closed at weekends"

`when` is optional (absent: the rule always matches); its grammar is in
shared.config_conditions. Actions: `route` (a named route) or `model` (a rewrite), not both;
`cap` and `latency_ceiling_ms` go alone or with either; `refuse` goes alone. A rule needs one.
Since the first match decides, a rule does everything its request needs: a cap for free users
and a route for long prompts are two rules, and a free user's long prompt gets the first one.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

from shared import configparse as cp
from shared.config_conditions import Cond, Scope, fail, parse_when
from shared.config_headers import policy_headers
from shared.config_models import TargetConfig, _targets, parse_prompt_cache
from shared.config_strategy import STRATEGY_KEYS, StrategyConfig, parse_strategy
from shared.configparse import ConfigError

MAX_RULES = 256
MAX_MESSAGE = 512  # characters of a refusal message
MAX_CONTENT_CHARS = 100_000
NO_RULE = "default"  # x-interlock-route when no rule matched: no rule may take the name
_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_CAP = frozenset(("max_tokens",))


@dataclass(frozen=True)
class NamedRouteConfig:
    name: str = field(metadata=cp.read_from())  # the key it is filed under in `routes`
    targets: tuple[TargetConfig, ...]
    # The route's strategy and its options, as a model's (shared.config_strategy).
    routing: StrategyConfig = field(default=StrategyConfig(), metadata=cp.read_from(*STRATEGY_KEYS))
    params: str = "strict"
    prompt_cache: str = "markers"  # as a model's (shared.config_models.ModelConfig)


@dataclass(frozen=True)
class RuleConfig:
    id: str
    when: Cond | None = None  # None: every request
    route: str | None = None
    model: str | None = None
    max_tokens: int | None = field(default=None, metadata=cp.read_from("cap"))
    latency_ceiling_ms: int | None = None
    refuse: str | None = None


@dataclass(frozen=True)
class RoutingConfig:
    routes: dict[str, NamedRouteConfig] = field(default_factory=dict)
    rules: tuple[RuleConfig, ...] = ()
    headers: frozenset[str] = frozenset()
    timezone: str = "UTC"
    content_max_chars: int = 0


_ROUTING = cp.keys_of(RoutingConfig)
_ROUTE = cp.keys_of(NamedRouteConfig)
_RULE = cp.keys_of(RuleConfig)


def parse_routing(
    raw: Any, providers: set[str], models: frozenset[str], budgets: frozenset[str]
) -> RoutingConfig:
    """The section, checked: `models` are the names a rewrite may name (models and aliases),
    `budgets` the budgets a condition may read."""
    s = cp.section(raw, "routing", _ROUTING)
    headers = frozenset(policy_headers(s))
    timezone = cp.string(s, "timezone", "routing", "UTC")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"routing.timezone: unknown time zone {timezone!r}") from None
    chars = cp.integer(s, "content_max_chars", "routing", 0, 0, MAX_CONTENT_CHARS)
    routes = _routes(s.get("routes"), providers)
    scope = Scope("", headers, budgets, chars > 0)
    rules = _rules(s.get("rules"), scope, frozenset(routes), models)
    return RoutingConfig(routes, rules, headers, timezone, chars)


def _routes(raw: Any, providers: set[str]) -> dict[str, NamedRouteConfig]:
    out = {}
    for name, entry in cp.named(raw, "routing.routes", "route name to targets").items():
        path = f"routing.routes.{name}"
        if not isinstance(name, str) or not _ID.fullmatch(name):
            raise ConfigError(f"{path}: a route name is 1-64 of A-Z a-z 0-9 . _ -")
        s = cp.section(entry, path, _ROUTE)
        targets = _targets(s.get("targets"), f"{path}.targets", name, providers)
        routing = parse_strategy(s, path)
        params = cp.string(s, "params", path, "strict")
        if params not in ("strict", "lenient"):
            raise ConfigError(f"{path}.params: expected strict or lenient")
        out[name] = NamedRouteConfig(name, targets, routing, params, parse_prompt_cache(s, path))
    return out


def _rules(
    raw: Any, scope: Scope, routes: frozenset[str], models: frozenset[str]
) -> tuple[RuleConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_RULES:
        raise ConfigError(f"routing.rules: expected a list of at most {MAX_RULES} rules")
    seen: set[str] = set()
    rules = []
    for i, entry in enumerate(raw):
        rule = _rule(entry, f"routing.rules[{i}]", scope, routes, models)
        if rule.id in seen:
            raise ConfigError(f"routing.rules[{i}].id: the id {rule.id!r} is used twice")
        seen.add(rule.id)
        rules.append(rule)
    return tuple(rules)


def _rule(
    raw: Any, path: str, scope: Scope, routes: frozenset[str], models: frozenset[str]
) -> RuleConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with id, when and an action")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not _ID.fullmatch(rule_id) or rule_id == NO_RULE:
        raise ConfigError(f"{path}.id: required, 1-64 of A-Z a-z 0-9 . _ - (and not {NO_RULE!r})")
    scope = Scope(rule_id, scope.headers, scope.budgets, scope.content)
    for key in raw:
        if key not in _RULE:
            known = ", ".join(sorted(_RULE))
            raise fail(f"{path}.{key}", f"unknown key (known: {known})", scope)
    when = None if raw.get("when") is None else parse_when(raw["when"], f"{path}.when", scope)
    route = _optional(raw, "route", path, scope)
    if route is not None and route not in routes:
        raise fail(f"{path}.route", f"no route named {route!r} in routing.routes", scope)
    model = _optional(raw, "model", path, scope)
    if model is not None and model not in models and "/" not in model:
        raise fail(f"{path}.model", f"no model or alias named {model!r}", scope)
    refuse = _optional(raw, "refuse", path, scope)
    if refuse is not None and len(refuse) > MAX_MESSAGE:
        raise fail(f"{path}.refuse", f"at most {MAX_MESSAGE} characters", scope)
    rule = RuleConfig(
        rule_id,
        when,
        route,
        model,
        _cap(raw.get("cap"), f"{path}.cap", scope),
        _ceiling(raw.get("latency_ceiling_ms"), f"{path}.latency_ceiling_ms", scope),
        refuse,
    )
    _check_actions(rule, path, scope)
    return rule


def _optional(raw: dict[str, Any], key: str, path: str, scope: Scope) -> str | None:
    value = raw.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise fail(f"{path}.{key}", "expected a non-empty string", scope)
    return value


def _cap(raw: Any, path: str, scope: Scope) -> int | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw:
        raise fail(path, "expected a mapping such as {max_tokens: 1024}", scope)
    for key in raw:
        if key not in _CAP:
            raise fail(f"{path}.{key}", "unknown key (known: max_tokens)", scope)
    value = raw["max_tokens"]
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10_000_000:
        raise fail(f"{path}.max_tokens", "expected a positive integer", scope)
    return value


def _ceiling(raw: Any, path: str, scope: Scope) -> int | None:
    if raw is None:
        return None
    if not isinstance(raw, int) or isinstance(raw, bool) or not 1 <= raw <= 3_600_000:
        raise fail(path, "expected milliseconds from 1 to 3600000", scope)
    return raw


def _check_actions(rule: RuleConfig, path: str, scope: Scope) -> None:
    """route or model; cap and a latency ceiling alone or with either; refuse alone."""
    if rule.route is not None and rule.model is not None:
        raise fail(path, "route and model both choose the targets: give one", scope)
    others = (rule.route, rule.model, rule.max_tokens, rule.latency_ceiling_ms)
    if rule.refuse is not None and any(v is not None for v in others):
        raise fail(f"{path}.refuse", "refuse goes alone (no other action applies)", scope)
    if rule.refuse is None and all(v is None for v in others):
        raise fail(
            path, "an action is required: route, model, cap, latency_ceiling_ms or refuse", scope
        )
