"""Provider options for kind `openai` (any OpenAI-compatible host), parsed once at start-up.

Options (all optional) under `providers.<name>.options`:
  preset   a host preset from core/providers/adapters/presets.py (default: inferred from base_url's
           host, else the generic OpenAI-compatible preset)
"""

from __future__ import annotations

from dataclasses import dataclass

from core.providers.adapters.base import Capabilities
from core.providers.adapters.options import check_keys, options_path
from core.providers.adapters.presets import Preset, known_presets, resolve
from shared.config import ProviderConfig
from shared.configparse import ConfigError, keys_of


@dataclass(frozen=True, slots=True)
class OpenAIOptions:
    preset: str | None = None


@dataclass(frozen=True, slots=True)
class OpenAISettings:
    """What requests to the provider need, resolved once: no per-request preset lookup."""

    preset: Preset
    url: str  # {base_url}/chat/completions
    capabilities: Capabilities


def parse_options(provider: ProviderConfig) -> OpenAIOptions:
    path = options_path(provider)
    check_keys(provider.options, keys_of(OpenAIOptions), path)
    name = provider.options.get("preset")
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"{path}.preset: expected a string")
    return OpenAIOptions(preset=name)


def parse_settings(provider: ProviderConfig) -> OpenAISettings:
    options = parse_options(provider)
    path = f"providers.{provider.name}"
    preset = resolve(options.preset, provider.base_url)
    if preset is None:
        raise ConfigError(
            f"{path}.options.preset: unknown preset {options.preset!r} (known: {known_presets()})"
        )
    base = provider.base_url or preset.base_url
    if base is None:
        raise ConfigError(f"{path}.base_url: required")
    if preset.key_required and not provider.api_keys:
        raise ConfigError(f"{path}.api_key: required for preset {preset.name!r}")
    return OpenAISettings(preset, f"{base}/chat/completions", preset.capabilities())
