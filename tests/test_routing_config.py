"""Start-up errors of the `routing` section: every unknown key, field or operator, wrong value,
unknown route, model, budget or header is a ConfigError naming the key path and the rule id;
regex shapes that backtrack catastrophically are refused."""

from __future__ import annotations

from typing import Any

import pytest

from core.routing.policy.rules import build_policy
from shared.config_conditions import nested_repetition
from shared.configparse import ConfigError
from tests.test_routing_policy import config

ROUTES = {"big": {"targets": [{"provider": "mock", "model": "big"}]}}

# (routing section, the start-up error: checked as a prefix)
ERRORS: list[tuple[dict[str, Any], str]] = [
    (
        {"rules": [{"id": "a", "when": {"tierr": "x"}, "model": "m"}]},
        "routing.rules[0].when.tierr: unknown field",
    ),
    (
        {"rules": [{"id": "a", "when": {"tier": {"eqq": "x"}}, "model": "m"}]},
        "routing.rules[0].when.tier.eqq: unknown operator 'eqq'",
    ),
    (
        {"rules": [{"id": "a", "when": {"stream": {"gt": 1}}, "model": "m"}]},
        "routing.rules[0].when.stream.gt: unknown operator 'gt' for stream",
    ),
    (
        {"rules": [{"id": "a", "when": {"prompt_tokens": {"gt": "8k"}}, "model": "m"}]},
        "routing.rules[0].when.prompt_tokens.gt: expected an integer",
    ),
    (
        {"rules": [{"id": "a", "when": {"api": "completions"}, "model": "m"}]},
        "routing.rules[0].when.api: expected one of chat, messages, embeddings",
    ),
    (
        {"rules": [{"id": "a", "when": {"time": {"ge": "25:00"}}, "model": "m"}]},
        "routing.rules[0].when.time.ge: expected a time of day",
    ),
    (
        {"rules": [{"id": "a", "when": {"model": {"regex": "("}}, "model": "m"}]},
        "routing.rules[0].when.model.regex: not a valid regex",
    ),
    (
        {"rules": [{"id": "a", "when": {"model": {"regex": "a" * 300}}, "model": "m"}]},
        "routing.rules[0].when.model.regex: expected a regex pattern of 1 to 256",
    ),
    (
        {"rules": [{"id": "a", "when": {"model": {"regex": "^(a+)+$"}}, "model": "m"}]},
        "routing.rules[0].when.model.regex: a repeated group that itself repeats",
    ),
    (
        {"rules": [{"id": "a", "when": {"header.x-secret": "1"}, "model": "m"}]},
        "routing.rules[0].when.header.x-secret: this header is not listed in routing.headers",
    ),
    (
        {"rules": [{"id": "a", "when": {"budget": {"name": "nope", "above": 80}}, "model": "m"}]},
        "routing.rules[0].when.budget.name: no budget named 'nope'",
    ),
    (
        {"rules": [{"id": "a", "when": {"content": {"keywords": ["x"]}}, "model": "m"}]},
        "routing.rules[0].when.content: content conditions are off",
    ),
    (
        {"rules": [{"id": "a", "when": {"any": {"tier": "x"}}, "model": "m"}]},
        "routing.rules[0].when.any: expected a non-empty list",
    ),
    (
        {"rules": [{"id": "a", "when": {"not": {"tier": {"in": []}}}, "model": "m"}]},
        "routing.rules[0].when.not.tier.in: expected a list of 1 to 256 values",
    ),
    (
        {"rules": [{"id": "a", "model": "m", "colour": "red"}]},
        "routing.rules[0].colour: unknown key",
    ),
    (
        {"rules": [{"id": "a", "route": "nowhere"}]},
        "routing.rules[0].route: no route named 'nowhere'",
    ),
    (
        {"rules": [{"id": "a", "model": "unknown"}]},
        "routing.rules[0].model: no model or alias named 'unknown'",
    ),
    (
        {"rules": [{"id": "a", "model": "m", "route": "big"}], "routes": ROUTES},
        "routing.rules[0]: route and model both choose",
    ),
    (
        {"rules": [{"id": "a", "refuse": "no", "cap": {"max_tokens": 5}}]},
        "routing.rules[0].refuse: refuse goes alone",
    ),
    ({"rules": [{"id": "a", "when": {"tier": "x"}}]}, "routing.rules[0]: an action is required"),
    (
        {"rules": [{"id": "a", "cap": {"max_tokenz": 5}}]},
        "routing.rules[0].cap.max_tokenz: unknown key",
    ),
    (
        {"rules": [{"id": "a", "cap": {"max_tokens": 0}}]},
        "routing.rules[0].cap.max_tokens: expected a positive integer",
    ),
    (
        {"rules": [{"id": "a", "latency_ceiling_ms": "fast"}]},
        "routing.rules[0].latency_ceiling_ms: expected milliseconds",
    ),
    ({"rules": [{"when": {"tier": "x"}, "model": "m"}]}, "routing.rules[0].id: required"),
    ({"rules": [{"id": "default", "model": "m"}]}, "routing.rules[0].id: required, 1-64"),
    (
        {"rules": [{"id": "a", "model": "m"}, {"id": "a", "model": "m"}]},
        "routing.rules[1].id: the id 'a' is used twice",
    ),
    (
        {"routes": {"big": {"targets": [{"provider": "nope"}]}}},
        "routing.routes.big.targets[0].provider: no provider named 'nope'",
    ),
    (
        {"routes": {"big": {"targets": ROUTES["big"]["targets"], "strategy": "random"}}},
        "routing.routes.big.strategy: expected one of",
    ),
    (
        {"routes": {"big": {"targets": ROUTES["big"]["targets"], "weights": 1}}},
        "routing.routes.big.weights: unknown key",
    ),
    ({"timezone": "Mars/Olympus"}, "routing.timezone: unknown time zone"),
    ({"headers": ["X Bad"]}, "routing.headers: 'x bad' is not a header name"),
    ({"rulez": []}, "routing.rulez: unknown key"),
    ({"headers": ["Authorization"]}, "routing.headers: 'authorization' is not for rules to read"),
    ({"headers": ["x-interlock-hop"]}, "routing.headers: 'x-interlock-hop' is not for rules"),
]


@pytest.mark.parametrize(("routing", "message"), ERRORS, ids=[m for _, m in ERRORS])
def test_startup_errors_name_the_key_and_the_rule(routing: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        config(routing)
    text = str(error.value)
    assert text.startswith(message), text
    if ".rules[" in message and ".id:" not in message:
        assert text.endswith("(rule 'a')"), text


@pytest.mark.parametrize(
    ("pattern", "nested"),
    [
        ("(a+)+", True),
        ("(a*)*", True),
        ("(?:ab+)+$", True),
        ("((a+))+", True),
        ("(x+){2,}", True),
        ("(a|b)*", False),
        ("[(a+)]+", False),
        (r"\(a+\)+", False),
        ("(a+)?", False),
        ("(a+)b+", False),
        (r"def \w+\(", False),
    ],
)
def test_catastrophic_regex_shapes_are_refused(pattern: str, nested: bool) -> None:
    assert nested_repetition(pattern) is nested


def test_a_rewrite_to_a_provider_model_must_resolve() -> None:
    routing = config({"rules": [{"id": "dyn", "model": "closed/x"}]})
    with pytest.raises(ConfigError, match=r"routing.rules\[0\].model: 'closed/x' does not resolve"):
        build_policy(routing, {}, lambda model: False)
