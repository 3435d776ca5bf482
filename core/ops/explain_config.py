"""`interlock config explain` (also `interlock check-config --verbose`): what the gateway will do
with this config, before a request is sent.

Three parts, all from the objects the core itself builds at start-up (core/startup.py's
`prepare_core`, so what is shown is what would run): the resolved configuration with secrets
masked (core/ops/config_view.py); each provider with the models it serves and the gateway
names that reach them; and, per model name a client may send, the route it takes: the
registry's Route (candidates in configured order, strategy, latency ceiling, tier routes) and
the routing rules that may redirect it, in order, with their conditions and actions.

A rule is listed for a model unless its conditions on `model` alone rule the model out; a rule
whose every condition is on the model and holds takes every request for it, so the rules after
it are not listed. What a single request meets (token estimates, live latencies, breakers,
budgets) is `interlock route explain`'s job, against a running core (core/ops/route.py).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from core.ops.config_view import condition, render
from core.routing.policy.conditions import compile_condition
from core.routing.policy.facts import Facts, Setting
from shared.config import Config, load_config
from shared.config_conditions import AllOf, Cond, fields_of
from shared.config_models import TargetConfig
from shared.config_routing import RuleConfig
from shared.secret import Secret

if TYPE_CHECKING:  # the adapters and the registry are imported only when a command runs
    from core.routing.registry import Route
    from core.startup import CoreParts


def explain(parts: CoreParts) -> str:
    """The whole explanation as text."""
    config = parts.config
    return "\n".join(
        [
            f"# interlock config explain: {config.source}",
            "",
            "# Resolved configuration (secrets masked)",
            *resolved(parts),
            "",
            "# Providers and the models they serve",
            *providers(config),
            "",
            "# Routes (per model name a client may send; first matching rule wins)",
            *routes(parts),
        ]
    )


def resolved(parts: CoreParts) -> list[str]:
    """Every section; each provider with the options its adapter keeps as Secrets masked
    by name, whatever the option is called."""
    config = parts.config
    top = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    del top["providers"]
    lines = render(top)
    lines.append("providers:")
    for name, provider in config.providers.items():
        settings = parts.providers[name].settings
        lines.append(f"  {name}:")
        lines += render(provider, _secret_fields(settings), 2)
    return lines


def _secret_fields(settings: object) -> frozenset[str]:
    if not dataclasses.is_dataclass(settings) or isinstance(settings, type):
        return frozenset()
    return frozenset(
        f.name
        for f in dataclasses.fields(settings)
        if isinstance(getattr(settings, f.name), Secret)
    )


def _uses(config: Config) -> dict[str, dict[str, list[str]]]:
    """provider -> its model id -> the gateway names (models, tiers, named routes) using it."""
    found: dict[str, dict[str, list[str]]] = {name: {} for name in config.providers}

    def note(targets: Iterable[TargetConfig], where: str) -> None:
        for target in targets:
            users = found[target.provider].setdefault(target.model, [])
            if where not in users:
                users.append(where)

    for name, model in config.models.items():
        note(model.targets, name)
        for tier, targets in model.tiers.items():
            note(targets, f"{name} (tier {tier})")
    for name, route in config.routing.routes.items():
        note(route.targets, f"route {name}")
    return found


def providers(config: Config) -> list[str]:
    lines = []
    for name, models in _uses(config).items():
        provider = config.providers[name]
        keys = len(provider.api_keys)
        lines.append(f"{name} (kind {provider.kind}, {keys} key{'' if keys == 1 else 's'}):")
        for model, users in models.items():
            lines.append(f"  {model}  <- {', '.join(users)}")
        if provider.allow_any_model:
            lines.append(f"  any model, as {name}/<model>  <- clients")
        if not models and not provider.allow_any_model:
            lines.append("  (no model or route names it: unused)")
    return lines


def route_line(route: Route) -> str:
    """A route's strategy and candidates in configured order, as the registry built them."""
    targets = ", ".join(c.target.label for c in route.candidates)
    extra = f", latency ceiling {route.ceiling_s * 1000:g} ms" if route.ceiling_s else ""
    params = "strict" if route.strict_params else "lenient"
    return f"{route.strategy} ({params} params{extra}): {targets}"


def routes(parts: CoreParts) -> list[str]:
    config, registry = parts.config, parts.registry
    lines = []
    if registry.named:
        lines.append("named routes (routing.routes):")
        lines += [f"  {name}: {route_line(route)}" for name, route in registry.named.items()]
    for name in (*config.models, *config.aliases):
        route = registry.resolve(name)
        if route is None:  # every configured name resolves; kept for the type checker
            continue
        alias = config.aliases.get(name)
        lines.append(f"{name}:" + (f"  (alias of {alias})" if alias else ""))
        lines.append(f"  route: {route_line(route)}")
        model = config.models.get(alias or name)
        for tier in model.tiers if model else ():
            lines.append(f"  tier {tier}: {route_line(registry.resolve(name, tier) or route)}")
        lines += _rules(name, config.routing.rules, parts.policy.setting)
    dynamic = [n for n, p in config.providers.items() if p.allow_any_model]
    if dynamic:
        names = ", ".join(f"{n}/<model>" for n in dynamic)
        lines.append(f"{names}: that provider alone, strict params (the rules apply as above)")
    return lines


def _conjuncts(cond: Cond) -> list[Cond]:
    if isinstance(cond, AllOf):
        return [part for item in cond.items for part in _conjuncts(item)]
    return [cond]


def applies(rule: RuleConfig, model: str, setting: Setting) -> bool | None:
    """Whether `rule` matches requests for `model`: False when a condition on the model alone
    fails, True when every condition is on the model alone and holds, else None (it depends
    on the request)."""
    if rule.when is None:
        return True
    facts = Facts(setting, "chat", model, {})
    depends = False
    for part in _conjuncts(rule.when):
        if set(fields_of(part)) != {"model"}:
            depends = True
        elif not compile_condition(part)(facts):
            return False
    return None if depends else True


def action(rule: RuleConfig) -> str:
    if rule.refuse is not None:
        return f"refused: {rule.refuse!r}"
    what = f"route {rule.route}" if rule.route else ""
    what = what or (f"model {rule.model}" if rule.model else "its own route")
    if rule.max_tokens is not None:
        what += f", max_tokens capped at {rule.max_tokens}"
    if rule.latency_ceiling_ms is not None:
        what += f", latency ceiling {rule.latency_ceiling_ms} ms"
    return what


def _rules(model: str, rules: tuple[RuleConfig, ...], setting: Setting) -> list[str]:
    lines = []
    for rule in rules:
        holds = applies(rule, model, setting)
        if holds is False:
            continue
        when = "always" if rule.when is None else f"when {condition(rule.when)}"
        lines.append(f"    {rule.id}: {when} -> {action(rule)}")
        if holds:
            lines.append(f"    (every request for {model} matches {rule.id}: later rules never do)")
            break
    if lines:
        lines.insert(0, "  rules that may redirect it:")
    else:
        lines.append("  no rule redirects it")
    return lines


def check(args: argparse.Namespace) -> int:
    """`interlock check-config`: the core's own start-up checks (core/startup.py: adapters,
    typed provider options, models, the hop secret), run without opening a socket: approved
    here means it starts. `--verbose` then explains the config."""
    from core.routing.policy.shadow import shadowed_rules
    from core.startup import no_session, prepare_core  # the adapters: only these commands

    parts = prepare_core(load_config(args.config), no_session)
    config = parts.config
    print(
        f"config OK ({config.source}): {len(config.providers)} providers, "
        f"{len(config.models)} models, {len(config.aliases)} aliases, "
        f"{len(config.routing.rules)} routing rules"
    )
    for shadowed in shadowed_rules(config.routing.rules):  # it starts, but the rule is dead
        print(f"warning: {shadowed}")
    if args.verbose:
        print(f"\n{explain(parts)}")
    return 0


def command(args: argparse.Namespace) -> int:
    """`interlock config explain`: the start-up checks, then the explanation."""
    from core.startup import no_session, prepare_core

    print(explain(prepare_core(load_config(args.config), no_session)))
    return 0


def add_parsers(sub: Any) -> None:
    """`check-config` and `config explain` under the CLI's subcommands (core.ops.cli)."""
    check_parser = sub.add_parser("check-config", help="validate the config and exit")
    check_parser.add_argument("--verbose", action="store_true", help="then explain it")
    check_parser.set_defaults(func=check, verbose=False)
    config = sub.add_parser("config", help="configuration tools").add_subparsers(
        dest="config_command", required=True
    )
    explain_parser = config.add_parser(
        "explain", help="resolved config (secrets masked), models per provider, routes"
    )
    explain_parser.set_defaults(func=command)
