"""Config errors point into the file (issue 18, item 4).

A YAML syntax error names the file, line and column; a key written twice in one mapping is
refused (YAML would silently keep the last); every error that names a key (the loaders', the
adapters' at the core's start-up) also names that key's line. And every adapter-level error
names its key path: each option of each provider kind, given values of every wrong shape, is
either accepted or refused with a ConfigError starting `providers.<name>`, never anything else.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from core.ops import cli
from core.providers.adapters.anthropic.settings import Settings as AnthropicSettings
from core.providers.adapters.azure import AzureOptions
from core.providers.adapters.bedrock.options import BedrockOptions
from core.providers.adapters.gemini.settings import Settings as GeminiSettings
from core.providers.adapters.gemini.settings import Vertex
from core.providers.adapters.openai_settings import OpenAIOptions
from core.providers.mock import MockOptions
from core.startup import no_session, prepare_core
from shared import config_file
from shared.config import ConfigError, ProviderConfig, load_config, load_edge_config, parse_config
from shared.config_file import line_of
from shared.configparse import keys_of
from tests.support.provider_kinds import BASES, start

HOP = "h" * 40
ENV = {"INTERLOCK_HOP_SECRET": HOP}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "interlock.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("providers:\n  p: {kind: mock\nmodels: {}\n", ":3:7:", "expected ',' or '}'"),
        ("edge:\n  port: 8080\n   host: x\n", ":3:8:", "mapping values are not allowed"),
        ("a: [1, 2\n", ":2:1:", "expected ',' or ']'"),
        ("a: 1\n---\nb: 2\n", ":2:1:", "expected a single document"),
        ("a: *nowhere\n", ":1:4:", "found undefined alias"),
    ],
)
def test_a_yaml_error_names_file_line_and_column(
    tmp_path: Path, text: str, where: str, problem: str
) -> None:
    path = write(tmp_path, text)
    for load in (load_config, load_edge_config):
        with pytest.raises(ConfigError) as info:
            load(path, env=ENV)
        message = str(info.value)
        assert message.startswith(f"{path}{where} not valid YAML ("), message
        assert problem in message


def test_a_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "interlock.yaml"
    path.write_bytes(b"providers:\n  p: {kind: \xff}\n")
    with pytest.raises(ConfigError, match=r"interlock\.yaml: not valid YAML \(.*not UTF-8"):
        load_config(path, env=ENV)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "providers:\n  p: {kind: mock}\n  q: {kind: mock}\n  p: {kind: openai}\n",
            ":4: providers.p: given twice (first on line 2)",
        ),
        ("hop:\n  max_skew: 5s\nhop:\n  max_skew: 9s\n", ":3: hop: given twice (first on line 1)"),
        (
            "edge:\n  routes:\n    - {pool: a, pool: b}\n",
            ":3: edge.routes[0].pool: given twice (first on line 3)",
        ),
    ],
)
def test_a_key_given_twice_is_refused_with_both_lines(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env=ENV)
    assert str(info.value).startswith(f"{path}{message}"), str(info.value)


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    text = (
        "providers:\n  base: &base {kind: mock}\n  a: {<<: *base, allow_any_model: true}\n"
        "  b:\n    <<: *base\n    <<: {allow_any_model: false}\n"
    )
    config = load_config(write(tmp_path, text), env=ENV)
    assert config.providers["a"].allow_any_model and not config.providers["b"].allow_any_model


TRICKY = """\
# a comment
state_dir: "/tmp/x y"   # quoted, trailing comment
auth: {issuer: 'it''s', max_ttl: 1h}
base: &base {kind: mock, n: 0x1f, f: 1.5e3, on: yes, when: 2026-12-02, none: ~}
providers:
  a: {<<: *base, allow_any_model: true}
  b:
    <<: [*base, {extra: "\\u00e9t\\u00e9"}]
    text: |
      two
        lines
    folded: >-
      one
      line
    list:
      - - nested
        - [1, 2]
      - key: value
        "quoted key": é
"""


def test_the_fast_yaml_parser_reads_files_as_the_pure_one_does(tmp_path: Path) -> None:
    """libyaml (the fast path) and the pure-Python parser give the same document and the same
    key lines, for every config the repository ships and for the awkward shapes above."""
    yaml = pytest.importorskip("yaml")
    if not yaml.__with_libyaml__:
        pytest.skip("PyYAML without libyaml: the pure parser is the only path")
    root = Path(__file__).resolve().parents[1]
    texts = [TRICKY, FILE] + [
        path.read_text(encoding="utf-8")
        for path in sorted((root / "infra").rglob("interlock*.yaml"))
    ]
    assert len(texts) >= 4
    for text in texts:
        fast = config_file._compose(yaml.CSafeLoader(text), tmp_path)
        assert fast == config_file._compose(yaml.SafeLoader(text), tmp_path)
        assert fast[1], "every text has keys"


FILE = """\
hop:
  secret: ${HOP}
edge:
  routes:
    - {models: ["x"], pool: default}
    - {models: ["y"], pool: default}
providers:
  mock: {kind: mock}
  aws:
    kind: bedrock
    options:
      region: us-east-1
models:
  gpt-4.1-mini:
    targets:
      - {provider: mock, model: a}
      - {provider: mock, model: b}
"""


@pytest.mark.parametrize(
    ("old", "new", "message", "line"),
    [
        # The loader's own checks.
        ('["y"], pool: default', '["y"], pool: b', "edge.routes[1].pool: no pool named", 6),
        ("region: us-east-1", "region: us-east-1\n      colour: red", "options.colour", 13),
        ("model: b}", "model: b, weight: -1}", "models.gpt-4.1-mini.targets[1].weight", 17),
        ("kind: bedrock", "kind: bedrock\n    wat: 1", "providers.aws.wat: unknown key", 11),
        ("${HOP}", "${NOT_SET}", "hop.secret: environment variable NOT_SET", 2),
        ("hop:", "colour: red\nhop:", "config.colour: unknown key", 1),
        # The adapters', at the core's start-up (core/startup.py).
        ("us-east-1", "mars", "providers.aws.options.region: 'mars' is not", 12),
        ("kind: bedrock", "kind: bedrok", "providers.aws.kind: unknown provider kind", 10),
        ("region: us-east-1", "profile: x", "providers.aws.options.region: required", 11),
    ],
)
def test_an_error_naming_a_key_names_its_line(
    tmp_path: Path, old: str, new: str, message: str, line: int
) -> None:
    assert old in FILE
    path = write(tmp_path, FILE.replace(old, new))
    with pytest.raises(ConfigError) as info:
        prepare_core(load_config(path, env={"HOP": HOP}), no_session)
    text = str(info.value)
    assert message in text and text.endswith(f" ({path}, line {line})"), text
    assert re.match(r"^[a-z_]+[.\[:]", text), text  # still starts with the key path


def test_check_config_prints_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, FILE.replace("us-east-1", "mars").replace("${HOP}", HOP))
    path.chmod(0o600)
    assert cli.main(["--config", str(path), "check-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("interlock: providers.aws.options.region: 'mars'")
    assert err.rstrip().endswith(f"({path}, line 12)")


def test_a_config_not_from_a_file_has_no_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"providers": {"p": {"kind": "mock", "wat": 1}}}, "test", {})
    assert "line" not in str(info.value)


def test_line_of_finds_the_nearest_enclosing_key() -> None:
    lines = {
        "models": 1,
        "models.gpt-4.1-mini": 2,
        "models.gpt-4.1-mini.targets": 3,
        "models.gpt-4.1-mini.targets[0]": 4,
    }
    assert line_of("models.gpt-4.1-mini.targets[0].provider", lines) == 4
    assert line_of("models.gpt-4.1-mini.tiers.free", lines) == 2
    assert line_of("config.models", lines) == 1
    assert line_of("routing", lines) is None


# --- every adapter-level error names its key path -------------------------------------------

OPTIONS: dict[str, type[Any]] = {
    "openai": OpenAIOptions,
    "azure": AzureOptions,
    "anthropic": AnthropicSettings,
    "gemini": GeminiSettings,
    "bedrock": BedrockOptions,
    "mock": MockOptions,
}
WRONG: list[Any] = [None, 0, -1, 1.5, True, "", "x", "2024-10-21", [], [1], ["a"], {}, {"a": 1}]


def variants(kind: str) -> list[tuple[str, dict[str, Any]]]:
    """The kind's base provider with one option (or provider key) set to each wrong value."""
    base = BASES[kind]
    out = []
    for key in sorted(keys_of(OPTIONS[kind])):
        for value in WRONG:
            options = {**_opts(base), key: value}
            out.append((f"options.{key}={value!r}", {**base, "options": options}))
    if kind == "gemini":
        for key in sorted(keys_of(Vertex)):
            for value in WRONG:
                vertex = {"project": "p", "location": "us-central1", key: value}
                out.append((f"vertex.{key}={value!r}", {**base, "options": {"vertex": vertex}}))
    for key in sorted(keys_of(ProviderConfig) - {"kind"}):
        for value in WRONG:
            out.append((f"{key}={value!r}", {**base, key: value}))
    return out


def _opts(base: dict[str, Any]) -> dict[str, Any]:
    return dict(base.get("options") or {})


@pytest.mark.parametrize("kind", sorted(BASES))
def test_every_adapter_error_names_its_key_path(kind: str) -> None:
    assert start(BASES[kind]) is None  # the base itself starts
    refused = 0
    for label, provider in variants(kind):
        message = start(provider)  # anything but a ConfigError fails the test here
        if message is not None:
            refused += 1
            assert message.startswith("providers.p"), (label, message)
    assert refused >= len(WRONG)  # the wrong shapes are refused, not ignored
