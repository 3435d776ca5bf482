"""Provider options for kind `anthropic`, validated once at start-up.

Options (all optional) under `providers.<name>.options`:
  version             anthropic-version header (default "2023-06-01")
  beta                list of anthropic-beta flags, sent comma-joined
  default_max_tokens  max_tokens when the client sets none (Anthropic requires one);
                      default: per model family, see `default_max_tokens`
  structured_outputs  true (default): response_format json_schema -> output_config.format and
                      tools[].function.strict is honoured; false for models or proxies
                      without structured outputs (json_schema is then not served)
  thinking_budgets    {low, medium, high} -> thinking budget_tokens for reasoning_effort
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.providers.adapters.options import check_keys
from shared.config import ProviderConfig
from shared.configparse import ConfigError, keys_of, read_from

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_VERSION = "2023-06-01"
# Anthropic's minimum thinking budget; a smaller one is a 400 upstream.
MIN_THINKING_BUDGET = 1024
DEFAULT_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384}

# Claude 3 (not 3.5/3.7) models cap output at 4096 tokens; later families allow far more, but a
# huge default would hold rate-limit capacity for answers that are rarely that long.
_LEGACY_PREFIXES = ("claude-3-opus", "claude-3-sonnet", "claude-3-haiku")


@dataclass(frozen=True, slots=True)
class Settings:
    """What requests need, resolved once; the options each field is read from are the keys
    `options` accepts (keys_of)."""

    url: str = field(metadata=read_from())  # from the provider's base_url
    # Static per provider: content type, version, beta, the provider's custom headers.
    headers: dict[str, str] = field(metadata=read_from("version", "beta"))
    default_max_tokens: int | None
    structured_outputs: bool
    budgets: dict[str, int] = field(metadata=read_from("thinking_budgets"))


_KNOWN = keys_of(Settings)


def default_max_tokens(model: str) -> int:
    return 4096 if model.startswith(_LEGACY_PREFIXES) else 8192


def messages_url(base_url: str | None) -> str:
    base = base_url or DEFAULT_BASE_URL
    # Tolerate a base URL that already names the API version, as OpenAI-style configs do.
    return f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"


def parse_settings(provider: ProviderConfig) -> Settings:
    path = f"providers.{provider.name}.options"
    options: dict[str, Any] = provider.options
    check_keys(options, _KNOWN, path)
    version = options.get("version", DEFAULT_VERSION)
    if not isinstance(version, str) or not version.strip():
        raise ConfigError(f"{path}.version: expected a non-empty string such as 2023-06-01")
    beta = options.get("beta", [])
    if isinstance(beta, str):
        beta = [beta]
    if not isinstance(beta, list) or not all(isinstance(b, str) and b.strip() for b in beta):
        raise ConfigError(f"{path}.beta: expected a list of non-empty strings")
    max_tokens = options.get("default_max_tokens")
    if max_tokens is not None and (
        not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
    ):
        raise ConfigError(f"{path}.default_max_tokens: expected a positive integer")
    structured = options.get("structured_outputs", True)
    if not isinstance(structured, bool):
        raise ConfigError(f"{path}.structured_outputs: expected true or false")
    headers = {
        "content-type": "application/json",
        "anthropic-version": version,
        **({"anthropic-beta": ",".join(b.strip() for b in beta)} if beta else {}),
        **provider.headers,
    }
    return Settings(
        url=messages_url(provider.base_url),
        headers=headers,
        default_max_tokens=max_tokens,
        structured_outputs=structured,
        budgets=_budgets(options.get("thinking_budgets"), f"{path}.thinking_budgets"),
    )


def _budgets(raw: Any, path: str) -> dict[str, int]:
    if raw is None:
        return dict(DEFAULT_BUDGETS)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of low/medium/high to token counts")
    budgets = dict(DEFAULT_BUDGETS)
    for key, value in raw.items():
        if key not in DEFAULT_BUDGETS:
            raise ConfigError(f"{path}.{key}: unknown effort (known: low, medium, high)")
        if not isinstance(value, int) or isinstance(value, bool) or value < MIN_THINKING_BUDGET:
            raise ConfigError(f"{path}.{key}: expected an integer of at least 1024")
        budgets[key] = value
    return budgets
