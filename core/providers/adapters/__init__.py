"""Adapter lookup by provider kind; each kind lives in its own module."""

from __future__ import annotations

import importlib

from core.providers.adapters.base import Adapter
from shared.configparse import ConfigError

# kind -> module holding a module-level ADAPTER. Loaded once at start-up, never per request.
KIND_MODULES = {
    "openai": "core.providers.adapters.openai_compat",
    "azure": "core.providers.adapters.azure",
    "anthropic": "core.providers.adapters.anthropic",
    "gemini": "core.providers.adapters.gemini",
    "bedrock": "core.providers.adapters.bedrock",
}


def load_adapter(kind: str, path: str) -> Adapter:
    module_name = KIND_MODULES.get(kind)
    if module_name is None:
        known = ", ".join(sorted([*KIND_MODULES, "mock"]))
        raise ConfigError(f"{path}: unknown provider kind {kind!r} (known: {known})")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise ConfigError(
            f"{path}: provider kind {kind!r} is not available in this build"
        ) from None
    adapter: Adapter = module.ADAPTER
    return adapter
