"""Shadowed routing rules (core.routing.policy.shadow): a rule an earlier one always pre-empts
is found by construction of the conditions and reported by `interlock check-config`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from core.ops import cli
from core.routing.policy.shadow import implies, shadowed_rules
from shared.config_conditions import Cond, parse_when
from tests.test_routing_policy import SCOPE, config


def parse(when: Any) -> Cond | None:
    return None if when is None else parse_when(when, "w", SCOPE)


# (earlier condition, later condition, later can never match)
IMPLIED: list[tuple[Any, Any, bool]] = [
    (None, {"tier": "free"}, True),  # a catch-all first
    ({"tier": "free"}, {"tier": "free"}, True),  # the same conditions
    ({"tier": "free"}, {"tier": "free", "stream": True}, True),  # fewer conditions first
    ({"tier": ["free", "trial"]}, {"tier": "free"}, True),
    ({"tier": ["free"]}, {"tier": ["free", "trial"]}, False),
    ({"tier": {"ne": "paid"}}, {"tier": "free"}, True),
    ({"tier": {"not_in": ["paid", "gold"]}}, {"tier": {"not_in": ["paid", "gold", "x"]}}, True),
    ({"prompt_tokens": {"gt": 8000}}, {"prompt_tokens": {"gt": 9000}}, True),
    ({"prompt_tokens": {"gt": 9000}}, {"prompt_tokens": {"gt": 8000}}, False),
    ({"prompt_tokens": {"ge": 100}}, {"prompt_tokens": {"gt": 99}}, True),
    ({"time": {"ge": "09:00"}}, {"time": {"ge": "10:00", "lt": "12:00"}}, True),
    (
        {"budget": {"name": "team-a", "above": 80}},
        {"budget": {"name": "team-a", "above": 90}},
        True,
    ),
    ({"any": [{"tier": "free"}, {"stream": True}]}, {"stream": True}, True),
    ({"stream": True}, {"any": [{"tier": "free"}, {"stream": True}]}, False),
    ({"tier": "free"}, {"tier": "paid"}, False),
    ({"tier": "free", "stream": True}, {"tier": "free"}, False),
    ({"tier": "free"}, {"tags.project": "x"}, False),
    ({"not": {"tier": "free"}}, {"not": {"tier": ["free", "trial"]}}, True),
]


@pytest.mark.parametrize(("earlier", "later", "shadowed"), IMPLIED)
def test_shadowing_by_construction(earlier: Any, later: Any, shadowed: bool) -> None:
    assert implies(parse(later), parse(earlier)) is shadowed


def test_shadowed_rules_are_listed_with_the_rule_that_hides_them() -> None:
    routing = config(
        {
            "rules": [
                {"id": "free", "when": {"tier": "free"}, "model": "small"},
                {"id": "paid", "when": {"tier": "paid"}, "model": "m"},
                {"id": "free-stream", "when": {"tier": "free", "stream": True}, "model": "m"},
                {"id": "all", "cap": {"max_tokens": 100}},
                {"id": "after-all", "when": {"tier": "gold"}, "model": "m"},
            ]
        }
    )
    found = [str(s) for s in shadowed_rules(routing.rules)]
    assert found == [
        "routing.rules[2] (rule 'free-stream') can never match: routing.rules[0] (rule 'free') "
        "before it matches every request it would",
        "routing.rules[4] (rule 'after-all') can never match: routing.rules[3] (rule 'all') "
        "before it matches every request it would",
    ]


def test_check_config_warns_of_shadowed_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = {
        "state_dir": str(tmp_path / "state"),
        "hop": {"secret": "c" * 40},
        "providers": {"mock": {"kind": "mock"}},
        "models": {"m": {"provider": "mock"}},
        "routing": {
            "rules": [
                {"id": "everyone", "cap": {"max_tokens": 100}},
                {"id": "free", "when": {"tier": "free"}, "model": "m"},
            ]
        },
    }
    path = tmp_path / "interlock.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert cli.main(["--config", str(path), "check-config"]) == 0  # it starts: a warning
    out = capsys.readouterr().out
    assert "2 routing rules" in out
    assert (
        "warning: routing.rules[1] (rule 'free') can never match: routing.rules[0] "
        "(rule 'everyone') before it matches every request it would"
    ) in out
    raw["routing"]["rules"].reverse()  # type: ignore[index]
    path.write_text(yaml.safe_dump(raw))
    assert cli.main(["--config", str(path), "check-config"]) == 0
    assert "warning" not in capsys.readouterr().out


def test_check_config_refuses_a_bad_rule_naming_key_and_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = {
        "state_dir": str(tmp_path / "state"),
        "hop": {"secret": "c" * 40},
        "providers": {"mock": {"kind": "mock"}},
        "models": {"m": {"provider": "mock"}},
        "routing": {"rules": [{"id": "x", "when": {"tier": {"like": "f%"}}, "model": "m"}]},
    }
    path = tmp_path / "interlock.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert cli.main(["--config", str(path), "check-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("interlock: routing.rules[0].when.tier.like: unknown operator"), err
    assert "(rule 'x')" in err
