"""The `options` of a bedrock provider, checked once at start-up.

The credential options (`access_key_id`, `secret_access_key`, `session_token`) are wrapped as
`Secret`s (or references, `aws-sm://...`) here, as they are parsed: the loaded config keeps
`options` out of its repr, and only these typed options outlive start-up
(core/providers/provider.py).

Static keys exist for tests and for operators who inject them from ${ENV}; without them the
botocore default chain (env, profile, SSO, container, IMDS) is used, resolved off the loop.
A provider-level `api_key` is a Bedrock API key: sent as a bearer token instead of SigV4.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.providers.adapters.base import settings_of
from core.providers.adapters.options import check_keys
from shared.config import ProviderConfig
from shared.configparse import ConfigError, keys_of, read_from

if TYPE_CHECKING:
    from core.providers.provider import Provider
from shared.secret import Secret
from shared.secret_sources import as_secret

_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")


@dataclass(frozen=True, slots=True)
class BedrockOptions:
    region: str
    access_key_id: Secret | None  # not secret, but rotated with the key: may be a reference
    secret_access_key: Secret | None
    session_token: Secret | None
    profile: str | None
    # The provider has an `api_key`: a Bedrock API key, sent as a bearer token instead of SigV4.
    bearer: bool = field(default=False, metadata=read_from())


_KNOWN = keys_of(BedrockOptions)


def _optional_string(options: dict[str, Any], key: str, path: str) -> str | None:
    value = options.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path}.{key}: expected a non-empty string")
    return value


def _optional_secret(options: dict[str, Any], key: str, path: str) -> Secret | None:
    """A credential option, wrapped as soon as it is read; it may be a reference
    (aws-sm://<secret>#<field>), read at start-up and refreshed (shared.secret_refresh)."""
    plain = _optional_string(options, key, path)
    return as_secret(plain, f"{path}.{key}") if plain is not None else None


def parse_options(provider: ProviderConfig) -> BedrockOptions:
    path = f"providers.{provider.name}.options"
    options = provider.options
    check_keys(options, _KNOWN, path)
    region = _optional_string(options, "region", path)
    if region is None:
        raise ConfigError(f"{path}.region: required (the AWS region to sign for, e.g. us-east-1)")
    if not _REGION.match(region):
        raise ConfigError(f"{path}.region: {region!r} is not an AWS region name")
    key_id = _optional_secret(options, "access_key_id", path)
    secret = _optional_secret(options, "secret_access_key", path)
    token = _optional_secret(options, "session_token", path)
    profile = _optional_string(options, "profile", path)
    if (key_id is None) != (secret is None):
        missing = "secret_access_key" if secret is None else "access_key_id"
        raise ConfigError(f"{path}.{missing}: required when the other static key is set")
    if token is not None and key_id is None:
        raise ConfigError(f"{path}.session_token: only valid with access_key_id/secret_access_key")
    if profile is not None and key_id is not None:
        raise ConfigError(f"{path}.profile: use either a profile or static keys, not both")
    if provider.api_keys and (key_id is not None or profile is not None):
        raise ConfigError(
            f"providers.{provider.name}.api_key: a Bedrock API key (bearer) replaces SigV4; "
            "do not combine it with static keys or a profile"
        )
    return BedrockOptions(region, key_id, secret, token, profile, bool(provider.api_keys))


def options_of(provider: Provider) -> BedrockOptions:
    """The options parsed at start-up (core/providers/provider.py)."""
    return settings_of(provider, BedrockOptions)


def base_url(provider: Provider) -> str:
    if provider.base_url:
        return provider.base_url
    return f"https://bedrock-runtime.{options_of(provider).region}.amazonaws.com"
