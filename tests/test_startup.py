"""core/startup.py: provider options are parsed once, at start-up, into typed frozen settings
on one Provider per configured provider, which the targets carry; requests never parse them
again."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from core.providers.adapters import anthropic, azure, gemini, openai_settings
from core.providers.adapters.anthropic.settings import Settings as AnthropicSettings
from core.providers.adapters.azure import AzureOptions
from core.providers.adapters.bedrock import options as bedrock_options
from core.providers.adapters.bedrock.options import BedrockOptions
from core.providers.adapters.gemini.settings import Settings as GeminiSettings
from core.providers.adapters.openai_settings import OpenAISettings
from core.providers.mock import MockOptions
from core.startup import no_session, prepare_core
from shared.config import ConfigError, parse_config

RAW: dict[str, Any] = {
    "hop": {"secret": "s" * 40},
    "providers": {
        "oai": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "allow_any_model": True},
        "az": {
            "kind": "azure",
            "base_url": "https://res.openai.azure.com",
            "api_key": "k",
            "options": {"api_version": "2024-06-01", "auth": "bearer"},
        },
        "claude": {"kind": "anthropic", "api_key": "k", "options": {"beta": ["b1"]}},
        "gem": {"kind": "gemini", "api_key": "k"},
        "aws": {"kind": "bedrock", "options": {"region": "eu-west-1"}},
        "mock": {"kind": "mock"},
    },
    "models": {
        name: {"provider": name, "model": "some-model"}
        for name in ("oai", "az", "claude", "gem", "aws", "mock")
    },
}
TYPES = {
    "oai": OpenAISettings,
    "az": AzureOptions,
    "claude": AnthropicSettings,
    "gem": GeminiSettings,
    "aws": BedrockOptions,
}
MESSAGES = [{"role": "user", "content": "hi"}]


def test_every_adapter_provider_gets_typed_frozen_settings_once() -> None:
    parts = prepare_core(parse_config(RAW, "test", {}), no_session)
    for name, kind in TYPES.items():
        settings = parts.providers[name].settings
        assert isinstance(settings, kind), name
        with pytest.raises(dataclasses.FrozenInstanceError):
            settings.__setattr__(dataclasses.fields(settings)[0].name, None)
        # The targets requests are served from carry those very settings.
        route = parts.registry.resolve(name)
        assert route is not None
        assert route.candidates[0].target.provider is parts.providers[name]
    assert isinstance(parts.providers["mock"].settings, MockOptions)  # the mock's are typed too
    options = parts.providers["az"].settings
    assert options == AzureOptions(api_version="2024-06-01", auth="bearer")


def test_requests_do_not_parse_options_again(monkeypatch: pytest.MonkeyPatch) -> None:
    parts = prepare_core(parse_config(RAW, "test", {}), no_session)

    def parse(*args: object) -> object:
        raise AssertionError("provider options parsed per request")

    for module in (anthropic, gemini, openai_settings, azure, bedrock_options):
        monkeypatch.setattr(module, "parse_settings", parse, raising=False)
        monkeypatch.setattr(module, "parse_options", parse, raising=False)
    monkeypatch.setattr("core.providers.adapters.openai_compat.parse_settings", parse)
    monkeypatch.setattr("core.providers.adapters.bedrock.adapter.parse_options", parse)
    for name in ("oai", "az", "claude", "gem", "aws", "oai/any-model"):
        route = parts.registry.resolve(name)
        assert route is not None
        candidate = route.candidates[0]
        for stream in (False, True):
            canonical = {"model": name, "messages": MESSAGES, "stream": stream}
            adapter = candidate.upstream.adapter  # type: ignore[attr-defined]
            request = adapter.build_request(canonical, candidate.target)
            assert request.url.startswith(("http://", "https://"))


def test_bad_options_are_refused_naming_the_key() -> None:
    raw = {**RAW, "providers": {"az": {**RAW["providers"]["az"], "options": {"auth": 1}}}}
    raw["models"] = {}
    with pytest.raises(ConfigError, match=r"^providers\.az\.options\.auth: expected"):
        prepare_core(parse_config(raw, "test", {}), no_session)
