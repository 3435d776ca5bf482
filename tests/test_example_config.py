"""infra/interlock.example.yaml documents every provider option (issue 18, items 2 and 3).

Its providers section holds a reference block, commented out, between `# reference:begin` and
`# reference:end`: one entry per way of configuring each provider kind. Read uncommented, it
must pass the core's start-up checks, and hold, each on a line with its one-line explanation:
every provider key, every key_limits key, and every option of every kind. What "every" means
comes from the code, never from a list here: the keys the start-up itself lists when it refuses
an unknown one (the settings dataclasses' keys, shared.configparse.keys_of), for each kind the
adapters know. So adding an option without documenting it fails this test, as the README's
capability table does (tests/test_captable.py). Secrets are ${ENV} references, never values.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from core.providers.adapters import KIND_MODULES
from core.providers.adapters.azure import ADAPTER as AZURE
from core.providers.adapters.base import Target
from core.providers.adapters.presets import PRESETS
from core.startup import no_session, prepare_core
from shared.config import parse_config
from shared.secret import Secret
from tests.support.example import EXAMPLE, block, example, fake_env, reference
from tests.support.provider_kinds import BASES, HOP_SECRET, known_keys

ENV_REF = re.compile(r"\$\{[A-Z][A-Z0-9_]*\}")
UNKNOWN = "not_an_option"


def commented_keys() -> dict[str, set[str]]:
    """Per scope (`provider`, `key_limits`, `options:<kind>`, `vertex`, `thinking_budgets`),
    the keys the block writes on a line that carries an explanation (a `#` comment)."""
    lines = block()
    found: dict[str, set[str]] = {}

    def note(scope: str, mapping: yaml.Node) -> None:
        assert isinstance(mapping, yaml.MappingNode), scope
        for key, _ in mapping.value:
            if "#" in lines[key.start_mark.line]:
                found.setdefault(scope, set()).add(key.value)

    root = yaml.compose("\n".join(lines))
    assert isinstance(root, yaml.MappingNode)
    for _, entry in root.value:
        note("provider", entry)
        fields = {k.value: v for k, v in entry.value}
        kind = fields["kind"].value
        if "key_limits" in fields:
            note("key_limits", fields["key_limits"])
        options = fields.get("options")
        if options is None:
            continue
        note(f"options:{kind}", options)
        nested = {k.value: v for k, v in options.value}
        for scope in ("vertex", "thinking_budgets"):
            if scope in nested:
                note(scope, nested[scope])
    return found


def test_every_kind_has_a_base() -> None:
    assert set(BASES) == {*KIND_MODULES, "mock"}


def expected_keys() -> dict[str, frozenset[str]]:
    """What the code accepts, per scope, as the start-up lists it."""
    openai = BASES["openai"]
    vertex = {"project": "p", "location": "us-central1", UNKNOWN: 1}
    return {
        "provider": known_keys({**openai, UNKNOWN: 1}),
        "key_limits": known_keys({**openai, "key_limits": {UNKNOWN: 1}}),
        "vertex": known_keys({**BASES["gemini"], "options": {"vertex": vertex}}),
        "thinking_budgets": known_keys(
            {**BASES["anthropic"], "options": {"thinking_budgets": {UNKNOWN: 1024}}}
        ),
        **{
            f"options:{kind}": known_keys(
                {**base, "options": {**(base.get("options") or {}), UNKNOWN: 1}}
            )
            for kind, base in BASES.items()
        },
    }


@pytest.mark.parametrize("scope", sorted(expected_keys()))
def test_every_option_is_documented_with_an_explanation(scope: str) -> None:
    missing = expected_keys()[scope] - commented_keys().get(scope, set())
    assert not missing, f"document {sorted(missing)} ({scope}) in {EXAMPLE.name}'s reference"


def test_the_reference_starts_with_the_examples_own_config() -> None:
    """Uncommented next to the example's active providers, every entry passes the core's
    start-up checks: the documentation cannot show a key or a value the code refuses."""
    raw, entries = example(), reference()
    assert not set(entries) & set(raw["providers"])  # uncommenting one clashes with nothing
    raw["providers"].update(entries)
    parts = prepare_core(parse_config(raw, "example", fake_env()), no_session)
    assert set(entries) <= set(parts.providers)
    assert {entry["kind"] for entry in entries.values()} == set(BASES)


def secret_keys(name: str, settings: object) -> set[str]:
    """The raw keys of a provider whose values end up as Secrets: its keys and the typed
    options the adapter wraps (Bedrock's credentials)."""
    keys = {"api_key", "api_keys"}
    if dataclasses.is_dataclass(settings):
        keys |= {
            f.name
            for f in dataclasses.fields(settings)
            if isinstance(getattr(settings, f.name), Secret)
        }
    return keys


def test_secrets_are_environment_references_never_values() -> None:
    raw = example(with_reference=True)
    entries = raw["providers"]
    config = parse_config(raw, "example", fake_env())
    parts = prepare_core(config, no_session)
    wrapped = 0
    for name, provider in parts.providers.items():
        written = {**entries[name], **(entries[name].get("options") or {})}
        for key in secret_keys(name, provider.settings) & set(written):
            values = written[key] if isinstance(written[key], list) else [written[key]]
            for value in values:
                assert ENV_REF.fullmatch(value), f"providers.{name}.{key}: use ${{VAR}}"
                wrapped += 1
    assert wrapped >= 10  # the keys of the active providers and Bedrock's credentials


def test_every_preset_is_listed_with_its_base_url_and_key_rule() -> None:
    lines = block()
    for name, preset in PRESETS.items():
        row = next((line for line in lines if re.match(rf"^\s*#\s+{name}\s", line)), None)
        assert row is not None, f"preset {name} is not listed"
        assert preset.base_url is not None and preset.base_url in row, row
        assert ("no key" in row) == (not preset.key_required), row


@pytest.mark.parametrize(
    ("entry", "url"),
    [
        ("azure", "https://NAME.openai.azure.com/openai/v1/chat/completions"),
        (
            "azure-dated",
            "https://NAME.openai.azure.com/openai/deployments/<deployment>/chat/completions"
            "?api-version=2024-10-21",
        ),
    ],
)
def test_the_azure_url_shapes_are_the_adapters(entry: str, url: str) -> None:
    """The example says where each api_version posts; the adapter agrees."""
    path = url.removeprefix("https://NAME.openai.azure.com")
    assert any(f"POST {path}" in line for line in block()), path
    raw = {"hop": {"secret": HOP_SECRET}, "providers": {entry: reference()[entry]}}
    config = parse_config(raw, "example", fake_env())
    provider = prepare_core(config, no_session).providers[entry]
    target = Target(provider, "<deployment>", None)
    assert AZURE.url(target).replace("%3C", "<").replace("%3E", ">") == url
