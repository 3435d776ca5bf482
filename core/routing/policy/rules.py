"""The policy: `routing.rules` compiled once at start-up, evaluated per request, first match wins.

Each rule becomes a `Rule`: its condition as one closure (core.routing.policy.conditions), its
named route already built by the registry, its rewrite already checked to resolve, its ceiling
in seconds. `Policy.decide` runs the closures in order over the request's `Facts` and returns
the first rule that holds, or None (the requested model's own route, `x-interlock-route:
default`). Nothing is parsed, looked up by name or compiled per request.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from core.routing.policy.conditions import Predicate, compile_condition
from core.routing.policy.facts import BudgetGauge, Facts, Setting
from core.routing.registry import Route
from shared.config_conditions import fields_of
from shared.config_routing import RoutingConfig
from shared.configparse import ConfigError

# The request field a refusal names, by the first fact its rule's condition reads.
_PARAMS = {
    "model": "model",
    "max_tokens": "max_tokens",
    "prompt_tokens": "messages",
    "images": "messages",
    "content": "messages",
    "stream": "stream",
    "tools": "tools",
    "structured_output": "response_format",
}


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    matches: Predicate
    route: Route | None = None  # a named route (routing.routes)
    model: str | None = None  # a rewrite, resolved again for the caller's tier
    max_tokens: int | None = None  # cap: max_tokens
    latency_ceiling_s: float | None = None
    refuse: str | None = None  # the operator's message
    param: str | None = None  # the request field a refusal names, when the rule reads one


class Policy:
    """The compiled rules and what their facts share (time zone, content cut, budget gauge)."""

    __slots__ = ("rules", "setting")

    def __init__(self, rules: tuple[Rule, ...], setting: Setting) -> None:
        self.rules = rules
        self.setting = setting

    def attach(self, gauge: BudgetGauge) -> None:
        """The budgets' gauge, once they are built (core.app): budget conditions read it."""
        self.setting.gauge = gauge

    def decide(self, facts: Facts) -> Rule | None:
        for rule in self.rules:
            if rule.matches(facts):
                return rule
        return None


def build_policy(
    config: RoutingConfig,
    named: Mapping[str, Route],
    resolves: Callable[[str], bool],
) -> Policy:
    """The policy from the checked config; `named` are the registry's named routes and
    `resolves` says whether a rewrite's model has a route (a `provider/model` whose provider
    serves no other names does not): a ConfigError naming the rule if not."""
    rules = []
    for i, rule in enumerate(config.rules):
        if rule.model is not None and not resolves(rule.model):
            raise ConfigError(
                f"routing.rules[{i}].model: {rule.model!r} does not resolve to a route "
                f"(rule {rule.id!r})"
            )
        fields = fields_of(rule.when) if rule.when is not None else ()
        param = next((_PARAMS[f] for f in fields if f in _PARAMS), None)
        ceiling = rule.latency_ceiling_ms
        rules.append(
            Rule(
                rule.id,
                compile_condition(rule.when),
                named[rule.route] if rule.route is not None else None,
                rule.model,
                rule.max_tokens,
                None if ceiling is None else ceiling / 1000.0,
                rule.refuse,
                param,
            )
        )
    setting = Setting(zoneinfo.ZoneInfo(config.timezone), config.content_max_chars)
    return Policy(tuple(rules), setting)
