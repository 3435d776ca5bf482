"""Each config key is written once: a section's accepted keys are its dataclass's fields
(shared.configparse.keys_of), renamed or left out by `read_from` metadata, never a second list.

Also the start-up check that the dispatcher's clocks exceed the connect timeout."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from core.providers.adapters.anthropic.settings import Settings as AnthropicSettings
from core.providers.adapters.bedrock.options import BedrockOptions
from core.providers.adapters.gemini.settings import Settings as GeminiSettings
from core.providers.adapters.gemini.settings import Vertex
from core.providers.mock import MockOptions
from shared.config import (
    AuthConfig,
    ConfigError,
    HopConfig,
    ModelConfig,
    ProviderConfig,
    RateLimit,
    ResilienceConfig,
    StateConfig,
    parse_config,
)
from shared.configparse import keys_of, read_from

PROVIDERS = {"p": {"kind": "mock"}}


def test_keys_of_takes_field_names_durations_and_read_from() -> None:
    @dataclass(frozen=True)
    class Section:
        plain: int
        wait_s: float  # a duration: read from `wait`
        renamed: bool = field(default=False, metadata=read_from("on_something"))
        both: tuple[str, ...] = field(default=(), metadata=read_from("one", "many"))
        derived: str = field(default="", metadata=read_from())  # no key sets it

    assert keys_of(Section) == {"plain", "wait", "on_something", "one", "many"}


def known_keys(raw: dict[str, Any], path: str) -> set[str]:
    """The keys a loaded config refuses an unknown key with, from its error message."""
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "test", {})
    message = str(info.value)
    assert message.startswith(f"{path}.not_a_key: unknown key")
    found = re.search(r"\(known: ([^)]*)\)", message)
    assert found is not None
    return set(found.group(1).split(", "))


@pytest.mark.parametrize(
    ("raw", "path", "declared"),
    [
        ({"providers": {"p": {"kind": "mock", "not_a_key": 1}}}, "providers.p", ProviderConfig),
        (
            {"providers": {"p": {"kind": "mock", "key_limits": {"not_a_key": 1}}}},
            "providers.p.key_limits",
            RateLimit,
        ),
        (
            {"providers": PROVIDERS, "models": {"m": {"provider": "p", "not_a_key": 1}}},
            "models.m",
            ModelConfig,
        ),
        ({"providers": PROVIDERS, "state": {"not_a_key": 1}}, "state", StateConfig),
        (
            {"providers": PROVIDERS, "limits": {"tiers": {"t": {"not_a_key": 1}}}},
            "limits.tiers.t",
            RateLimit,
        ),
        (
            {"providers": PROVIDERS, "core": {"resilience": {"not_a_key": 1}}},
            "core.resilience",
            ResilienceConfig,
        ),
        ({"providers": PROVIDERS, "auth": {"not_a_key": 1}}, "auth", AuthConfig),
        ({"providers": PROVIDERS, "hop": {"not_a_key": 1}}, "hop", HopConfig),
    ],
)
def test_each_section_accepts_exactly_its_dataclasss_keys(
    raw: dict[str, Any], path: str, declared: type[Any]
) -> None:
    assert known_keys(raw, path) == keys_of(declared)


def test_the_keys_read_from_other_names() -> None:
    assert {"api_key", "api_keys", "key_limits", "timeout"} <= keys_of(ProviderConfig)
    assert "name" not in keys_of(ProviderConfig) and "name" not in keys_of(ModelConfig)
    assert {"targets", "provider", "model"} <= keys_of(ModelConfig)
    assert keys_of(StateConfig) == {"redis_url", "on_redis_down", "replicas", "cluster"}
    assert "breaker_open_for" in keys_of(ResilienceConfig)
    assert "jwks" in keys_of(AuthConfig) and "revocation_required" not in keys_of(AuthConfig)


def test_provider_options_are_their_typed_settings_keys() -> None:
    assert keys_of(MockOptions) == {"delay_ms", "chunk_delay_ms"}
    assert keys_of(BedrockOptions) == {
        "region",
        "access_key_id",
        "secret_access_key",
        "session_token",
        "profile",
    }
    assert keys_of(AnthropicSettings) == {
        "version",
        "beta",
        "default_max_tokens",
        "structured_outputs",
        "thinking_budgets",
    }
    assert keys_of(GeminiSettings) == {
        "vertex",
        "api_version",
        "safety_settings",
        "include_thoughts",
    }
    assert keys_of(Vertex) == {"project", "location", "token_file"}


@pytest.mark.parametrize("key", ["first_byte_timeout", "completion_timeout"])
@pytest.mark.parametrize("value", ["2s", "5s"])
def test_dispatcher_timeouts_must_exceed_the_connect_timeout(key: str, value: str) -> None:
    core = {"connect_timeout": "5s", "resilience": {key: value}}
    with pytest.raises(ConfigError, match=rf"^core\.resilience\.{key}: must exceed core\.connect"):
        parse_config({"providers": PROVIDERS, "core": core}, "test", {})
    core = {"connect_timeout": "500ms", "resilience": {key: value}}
    config = parse_config({"providers": PROVIDERS, "core": core}, "test", {})
    assert getattr(config.core.resilience, f"{key}_s") == float(value.removesuffix("s"))
