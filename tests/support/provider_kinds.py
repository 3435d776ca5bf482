"""One provider of each kind that passes the core's start-up checks, and a start-up on one:
what the config tests vary option by option (tests/test_config_locations.py,
tests/test_example_config.py)."""

from __future__ import annotations

import re
from typing import Any

from core.startup import no_session, prepare_core
from shared.config import ConfigError, parse_config

HOP_SECRET = "h" * 40
# The smallest valid provider of each kind (every adapter kind, and the built-in mock).
BASES: dict[str, dict[str, Any]] = {
    "openai": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"},
    "azure": {"kind": "azure", "base_url": "https://r.openai.azure.com", "api_key": "k"},
    "anthropic": {"kind": "anthropic", "api_key": "k"},
    "gemini": {"kind": "gemini", "api_key": "k"},
    "bedrock": {"kind": "bedrock", "options": {"region": "us-east-1"}},
    "mock": {"kind": "mock"},
}
_KNOWN = re.compile(r"\(known: ([^)]*)\)")


def start(provider: dict[str, Any]) -> str | None:
    """The core's start-up with `provider` as `providers.p`: None when it starts, else the
    ConfigError's text (any other exception propagates: a defect)."""
    raw = {"hop": {"secret": HOP_SECRET}, "providers": {"p": provider}}
    raw["models"] = {"m": {"provider": "p", "model": "x"}}
    try:
        prepare_core(parse_config(raw, "test", {}), no_session)
    except ConfigError as error:
        return str(error)
    return None


def known_keys(provider: dict[str, Any]) -> frozenset[str]:
    """The keys the start-up lists when it refuses an unknown one in `provider`."""
    message = start(provider)
    found = _KNOWN.search(message or "")
    assert found is not None, message
    return frozenset(found.group(1).split(", "))
