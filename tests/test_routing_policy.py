"""Routing policy rules (core.routing.policy, shared.config_routing): the condition grammar,
every operator over every kind of fact, precedence (first match wins), start-up errors that
name the key and the rule, and shadowed-rule detection. Table tests, no sockets."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime
from typing import Any

import pytest

from core.routing.policy.conditions import compile_condition
from core.routing.policy.facts import Facts, Setting
from core.routing.policy.rules import build_policy
from core.routing.registry import Route
from shared.config import parse_config
from shared.config_conditions import Scope, parse_when
from shared.config_routing import RoutingConfig

SCOPE = Scope("r1", frozenset({"x-team"}), frozenset({"team-a"}), content=True)
# Wednesday 2026-12-02 14:30 UTC.
NOON_ISH = datetime(2026, 12, 2, 14, 30, tzinfo=UTC).timestamp()


class Gauge:
    def __init__(self, shares: dict[str, float]) -> None:
        self.shares = shares

    def used_share(self, name: str) -> float | None:
        return self.shares.get(name)


def facts(payload: dict[str, Any] | None = None, **overrides: Any) -> Facts:
    """The default request (a free tier chat from acme, 9000 prompt tokens), or changed."""
    setting = Setting(
        overrides.pop("zone", zoneinfo.ZoneInfo("UTC")),
        overrides.pop("content_chars", 100),
        overrides.pop("gauge", Gauge({"team-a": 0.85})),
        lambda: NOON_ISH,
    )
    api = overrides.pop("api", "chat")
    body = payload or {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "please write def main(): pass"}],
        "max_tokens": 500,
    }
    fields: dict[str, Any] = {
        "stream": False,
        "tenant": "acme",
        "tier": "free",
        "tags": (("project", "search"),),
        "headers": {"x-team": "blue"},
        "prompt": lambda: 9000,
        **overrides,
    }
    return Facts(setting, api, body.get("model", "gpt-4o"), body, **fields)


def holds(when: Any, f: Facts | None = None) -> bool:
    return compile_condition(parse_when(when, "routing.rules[0].when", SCOPE))(f or facts())


# (condition, expected on the default facts above)
TABLE: list[tuple[Any, bool]] = [
    # strings: eq (scalar shorthand), ne, in (list shorthand), not_in, glob, regex
    ({"model": "gpt-4o"}, True),
    ({"model": {"eq": "gpt-4"}}, False),
    ({"model": {"ne": "gpt-4"}}, True),
    ({"tier": ["free", "trial"]}, True),
    ({"tier": {"in": ["paid"]}}, False),
    ({"tier": {"not_in": ["paid"]}}, True),
    ({"model": {"glob": "gpt-*"}}, True),
    ({"model": {"glob": "gpt"}}, False),  # a glob matches the whole string
    ({"model": {"regex": "4o$"}}, True),  # a regex is searched
    ({"tenant": {"regex": "^b"}}, False),
    # integers: eq, ne, in, lt, le, gt, ge
    ({"prompt_tokens": {"gt": 8000}}, True),
    ({"prompt_tokens": {"gt": 9000}}, False),
    ({"prompt_tokens": {"ge": 9000}}, True),
    ({"prompt_tokens": {"lt": 9000}}, False),
    ({"prompt_tokens": {"le": 9000}}, True),
    ({"max_tokens": 500}, True),
    ({"max_tokens": {"ne": 500}}, False),
    ({"max_tokens": [100, 500]}, True),
    ({"max_tokens": {"gt": 100, "lt": 1000}}, True),  # operators in one mapping: all hold
    ({"max_tokens": {"gt": 100, "lt": 200}}, False),
    # booleans
    ({"stream": False}, True),
    ({"tools": True}, False),
    ({"images": {"ne": True}}, True),
    ({"structured_output": False}, True),
    # choices
    ({"api": "chat"}, True),
    ({"api": {"in": ["messages", "embeddings"]}}, False),
    # tags and allowlisted headers; a missing one: only ne / not_in hold
    ({"tags.project": "search"}, True),
    ({"tags.team": "x"}, False),
    ({"tags.team": {"ne": "x"}}, True),
    ({"tags.team": {"not_in": ["x"]}}, True),
    ({"tags.team": {"regex": "."}}, False),
    ({"header.x-team": "blue"}, True),
    ({"header.X-Team": {"glob": "bl*"}}, True),  # header names in any case
    # time (Wednesday 14:30 UTC)
    ({"hour": 14}, True),
    ({"hour": {"ge": 9, "lt": 17}}, True),
    ({"weekday": {"in": ["sat", "sun"]}}, False),
    ({"weekday": "wed"}, True),
    ({"time": {"ge": "14:30"}}, True),
    ({"time": {"gt": "14:30"}}, False),
    # budget pressure (85% used)
    ({"budget": {"name": "team-a", "above": 80}}, True),
    ({"budget": {"name": "team-a", "above": 90}}, False),
    ({"budget": {"name": "team-a", "below": 90}}, True),
    # content over the last user message
    ({"content": {"keywords": ["DEF ", "class "]}}, True),  # keywords: any, any case
    ({"content": {"keywords": ["select"]}}, False),
    ({"content": {"regex": r"def \w+\("}}, True),
    # combinators
    ({"any": [{"tier": "paid"}, {"stream": False}]}, True),
    ({"any": [{"tier": "paid"}, {"stream": True}]}, False),
    ({"all": [{"tier": "free"}, {"stream": True}]}, False),
    ({"all": [{"tier": "free"}, {"stream": False}, {"api": "chat"}]}, True),
    ({"not": {"tier": "free"}}, False),
    ({"tier": "free", "model": {"glob": "claude-*"}}, False),  # keys of a mapping: all hold
]


@pytest.mark.parametrize(("when", "expected"), TABLE, ids=[repr(w) for w, _ in TABLE])
def test_conditions_over_the_default_facts(when: Any, expected: bool) -> None:
    assert holds(when) is expected


def test_facts_the_request_lacks_and_lazy_facts() -> None:
    asked: list[int] = []

    def prompt() -> int:
        asked.append(1)
        return 10

    bare = facts({"model": "m", "messages": []}, prompt=prompt, gauge=None)
    assert not holds({"max_tokens": {"lt": 10**9}}, bare)  # no max_tokens: never compares
    assert not holds({"budget": {"name": "team-a", "below": 100}}, bare)  # no gauge: unknown
    assert not asked  # the prompt is estimated only when a rule asks
    assert holds({"prompt_tokens": 10}, bare) and holds({"prompt_tokens": {"lt": 11}}, bare)
    assert len(asked) == 1  # and once
    images = {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}],
        "response_format": {"type": "json_schema"},
        "tools": [{"type": "function"}],
        "max_completion_tokens": 7,
    }
    f = facts(images)
    assert holds({"images": True, "structured_output": True, "tools": True}, f)
    assert holds({"max_tokens": 7}, f)
    assert not holds({"content": {"keywords": ["def"]}}, f)  # no text at all
    anthropic = {"model": "m", "messages": [], "output_config": {"format": {"type": "x"}}}
    assert holds({"structured_output": True}, facts(anthropic, api="messages"))
    assert holds({"structured_output": False}, facts({"model": "m", "response_format": "text"}))


def test_content_is_cut_at_the_configured_length() -> None:
    text = "x" * 50 + "NEEDLE"
    payload = {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
    }
    assert holds({"content": {"keywords": ["needle"]}}, facts(payload, content_chars=100))
    assert not holds({"content": {"keywords": ["needle"]}}, facts(payload, content_chars=50))
    embeddings = {"model": "e", "input": ["first", "last NEEDLE"]}
    assert holds({"content": {"regex": "NEEDLE"}}, facts(embeddings, api="embeddings"))


def test_time_conditions_in_the_configured_zone() -> None:
    tokyo = facts(zone=zoneinfo.ZoneInfo("Asia/Tokyo"))  # 23:30 on Wednesday there
    assert holds({"hour": 23, "weekday": "wed"}, tokyo)
    assert holds({"time": {"ge": "22:00"}}, tokyo)


# ---- config: rules, actions, precedence --------------------------------------------------


def config(routing: dict[str, Any], **extra: Any) -> RoutingConfig:
    raw = {
        "providers": {"mock": {"kind": "mock", "allow_any_model": True}},
        "models": {"m": {"provider": "mock"}, "small": {"provider": "mock"}},
        "budgets": {"team-a": {"limit": "10.00"}},
        "routing": routing,
        **extra,
    }
    return parse_config(raw, "test", {}).routing


def test_first_match_wins_and_no_match_is_none() -> None:
    routing = config(
        {
            "routes": {"big": {"targets": [{"provider": "mock", "model": "big"}]}},
            "rules": [
                {"id": "long", "when": {"prompt_tokens": {"gt": 8000}}, "route": "big"},
                {
                    "id": "free",
                    "when": {"tier": "free"},
                    "model": "small",
                    "cap": {"max_tokens": 9},
                },
                {"id": "rest", "latency_ceiling_ms": 250},
            ],
        }
    )
    big = Route("big", (), True, True)
    policy = build_policy(routing, {"big": big}, lambda model: True)
    decided = policy.decide(facts())
    assert decided is not None and decided.id == "long" and decided.route is big
    decided = policy.decide(facts(prompt=lambda: 10))
    assert decided is not None and (decided.id, decided.model, decided.max_tokens) == (
        "free",
        "small",
        9,
    )
    decided = policy.decide(facts(prompt=lambda: 10, tier="paid"))
    assert decided is not None and decided.id == "rest" and decided.latency_ceiling_s == 0.25
    assert build_policy(config({}), {}, lambda m: True).decide(facts()) is None


ODD_PAYLOADS: list[dict[str, Any]] = [
    {"model": "m"},
    {"model": "m", "messages": "text", "max_tokens": True, "tools": 0, "response_format": []},
    {"model": "m", "messages": [None, 3, {"role": "user", "content": None}]},
    {"model": "m", "messages": [{"role": "user", "content": [None, {"text": 5}, {"type": 1}]}]},
    {"model": "m", "input": [[1, 2], [3]], "output_config": "x", "max_completion_tokens": 2.5},
    {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "é" * 9}]}]},
]
EVERY_FIELD = {
    "any": [
        {"prompt_tokens": {"gt": 1}},
        {"max_tokens": {"lt": 10}},
        {"tools": True},
        {"images": True},
        {"structured_output": True},
        {"content": {"keywords": ["x"]}},
        {"content": {"regex": "é+"}},
        {"tags.absent": {"glob": "*"}},
        {"header.x-team": {"regex": "^$"}},
        {"time": {"lt": "00:01"}},
        {"weekday": "sun"},
    ]
}


@pytest.mark.parametrize("payload", ODD_PAYLOADS)
def test_odd_payloads_never_raise_in_a_condition(payload: dict[str, Any]) -> None:
    """Validation runs first, but a fact is read defensively anyway: a condition is True or
    False for any JSON, never an exception (which would be a 500)."""
    assert holds(EVERY_FIELD, facts(payload, headers={})) in (True, False)
