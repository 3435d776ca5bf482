"""Helpers for the adapters' typed provider options (`providers.<name>.options`).

Each kind declares its options once, as a frozen dataclass; the keys a config may use are that
dataclass's field names (`shared.configparse.keys_of`), never written out a second time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.config import ProviderConfig
from shared.configparse import ConfigError


def check_keys(raw: Mapping[str, Any], known: frozenset[str], path: str) -> None:
    """Refuse an unknown key, naming it: a typo must not silently fall back to a default."""
    unknown = sorted(str(key) for key in raw if key not in known)
    if unknown:
        raise ConfigError(
            f"{path}.{unknown[0]}: unknown option (known: {', '.join(sorted(known))})"
        )


def options_path(provider: ProviderConfig) -> str:
    return f"providers.{provider.name}.options"
