"""`interlock config explain` / `check-config --verbose` (issue 18, item 5), on the example
config with every provider of its reference block and fake secrets in the environment.

It must print the resolved configuration with no secret in it (keys, Bedrock credentials, the
hop secret, a header's token, URL passwords, a webhook), the models each provider serves, and
the route each model name takes with the rules that may redirect it.
"""

from __future__ import annotations

import re
import zoneinfo
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.ops import cli
from core.ops.config_view import Seconds, render, without_password
from core.ops.explain_config import applies
from core.routing.policy.facts import Setting
from shared.config_routing import parse_routing
from shared.secret import MASK
from tests.support.example import SECRET_MARK, example, fake_env

MASKED = f"Secret('{MASK}')"


@pytest.fixture
def explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> str:
    raw = example(with_reference=True)
    raw["state_dir"] = str(tmp_path / "state")
    raw["state"] = {"redis_url": f"redis://:redis-{SECRET_MARK}@127.0.0.1:6379/0"}
    raw["ledger"]["url"] = f"postgresql://interlock:db-{SECRET_MARK}@db.internal/interlock"
    raw["providers"]["openai"]["headers"] = {
        "Authorization": f"Bearer header-{SECRET_MARK}",
        "X-Api-Key": f"header-{SECRET_MARK}",
        "X-Title": "demo-title",
    }
    raw["budgets"]["research-monthly"]["webhook"] = f"https://hooks.example/T/hook-{SECRET_MARK}"
    path = tmp_path / "interlock.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    for name, value in fake_env().items():
        monkeypatch.setenv(name, value)
    assert cli.main(["--config", str(path), "config", "explain"]) == 0
    out = capsys.readouterr().out
    assert cli.main(["--config", str(path), "check-config", "--verbose"]) == 0
    verbose = capsys.readouterr().out
    assert verbose.startswith("config OK") and verbose.endswith(out)  # the same explanation
    return out


def section(text: str, title: str) -> str:
    return text.split(f"# {title}", 1)[1].split("\n# ", 1)[0]


def entry(text: str, name: str) -> str:
    """A model's (or provider's) lines in a section: its line and the indented ones after."""
    found = re.search(rf"^{re.escape(name)}:.*\n((?:  .*\n?)*)", text, re.MULTILINE)
    assert found is not None, name
    return found.group(0)


def test_no_secret_is_printed(explained: str) -> None:
    assert SECRET_MARK not in explained
    assert MASKED in explained
    resolved = section(explained, "Resolved configuration (secrets masked)")
    assert f"secret: {MASKED}" in resolved  # hop.secret
    for name in ("secret_access_key", "session_token"):  # Bedrock's, in the raw options
        assert f"{name}: {MASKED}" in resolved
    assert f"api_keys: [{MASKED}, {MASKED}]" in resolved  # the acme entry's pool
    assert f"Authorization: {MASKED}" in resolved and f"X-Api-Key: {MASKED}" in resolved
    assert "X-Title: demo-title" in resolved  # not a secret: shown
    assert f"redis_url: redis://:{MASK}@127.0.0.1:6379/0" in resolved
    assert f"url: postgresql://interlock:{MASK}@db.internal/interlock" in resolved
    assert f"webhook: {MASKED}" in resolved
    assert "token_file: /var/run/gcp/token" in resolved  # a path to a secret is shown


def test_the_resolved_values_are_shown_in_config_units(explained: str) -> None:
    resolved = section(explained, "Resolved configuration (secrets masked)")
    assert "  pools:\n    default: [http://127.0.0.1:8081]" in resolved  # from core.port
    assert "  max_ttl: 1h\n" in resolved and "    backoff_base: 250ms\n" in resolved
    assert "  retention: 400d\n" in resolved
    assert "api_version: '2024-10-21'" in resolved  # quoted: YAML would read a date


def test_each_provider_lists_the_models_it_serves(explained: str) -> None:
    served = section(explained, "Providers and the models they serve")
    openai = entry(served, "openai (kind openai, 1 key)")
    assert "  gpt-4.1-mini  <- auto, route free-chat, route paid-chat\n" in openai
    assert "  gpt-4o-mini  <- gpt-4o-mini\n" in openai
    assert "  mock-1  <- mock-1, gpt-4o-mini, gpt-4o-mini (tier free)" in entry(
        served, "mock (kind mock, 0 keys)"
    )
    assert "any model, as mock/<model>" in served
    assert "unused" in entry(served, "bedrock-static (kind bedrock, 0 keys)")


def test_each_model_shows_its_route_and_the_rules_that_may_redirect_it(explained: str) -> None:
    routes = section(explained, "Routes (per model name a client may send; first matching")
    assert re.search(
        r"^  cheapest: cost \(strict params\): groq/llama-3\.1-8b-instant, "
        r"gemini/gemini-2\.5-flash-lite, mistral/mistral-small-latest$",
        routes,
        re.MULTILINE,
    )
    auto = entry(routes, "auto")
    assert "  route: fallback (strict params): openai/gpt-4.1-mini\n" in auto
    rules = re.findall(r"^    ([a-z-]+): ", auto, re.MULTILINE)
    assert rules == [rule["id"] for rule in example()["routing"]["rules"]]  # each may apply
    assert rules[-1] == "paying-customers"
    assert "free-users: when model eq auto and tier eq free -> route free-chat" in auto
    assert "every request for auto matches paying-customers" in auto
    assert (
        "realtime-chat: when header.x-task eq realtime -> route realtime, latency ceiling 200 ms"
        in auto
    )
    gpt = entry(routes, "gpt-4o-mini")
    assert "  tier free: fallback (strict params): mock/mock-1\n" in gpt
    assert "free-users" not in gpt and "paying-customers" not in gpt  # only for `auto`
    assert "default:  (alias of mock-1)" in routes


def rule_table(rules: list[dict[str, Any]]) -> list[Any]:
    routing = parse_routing(
        {"routes": {"r": {"targets": [{"provider": "p", "model": "m"}]}}, "rules": rules},
        {"p"},
        frozenset({"x"}),
        frozenset(),
    )
    return list(routing.rules)


@pytest.mark.parametrize(
    ("when", "model", "expected"),
    [
        (None, "gpt-4o", True),
        ({"model": "gpt-4o"}, "gpt-4o", True),
        ({"model": "gpt-4o"}, "claude", False),
        ({"model": {"glob": "gpt-*"}}, "gpt-4o", True),
        ({"model": {"glob": "gpt-*"}, "tier": "free"}, "gpt-4o", None),
        ({"model": {"glob": "gpt-*"}, "tier": "free"}, "claude", False),
        ({"not": {"model": "gpt-4o"}}, "gpt-4o", False),
        ({"any": [{"model": "gpt-4o"}, {"tier": "free"}]}, "claude", None),
        ({"tags.team": "search"}, "gpt-4o", None),
    ],
)
def test_whether_a_rule_applies_to_a_model(when: Any, model: str, expected: bool | None) -> None:
    rule = {"id": "r", "route": "r", **({"when": when} if when is not None else {})}
    (parsed,) = rule_table([rule])
    assert applies(parsed, model, Setting(zoneinfo.ZoneInfo("UTC"))) is expected


def test_masking_helpers() -> None:
    assert without_password("redis://u:pw@h:1/0") == f"redis://u:{MASK}@h:1/0"
    assert without_password("https://h/x?y=1") == "https://h/x?y=1"
    assert without_password("not a url") == "not a url"
    assert [str(Seconds(s)) for s in (0.25, 30, 90, 3600, 86400 * 400, 0)] == [
        "250ms",
        "30s",
        "90s",
        "1h",
        "400d",
        "0s",
    ]
    lines = render({"options": {"password": "p", "region": "r", "client_token": ""}})
    assert lines == ["options:", f"  password: {MASKED}", "  region: r", "  client_token: ''"]
