"""Providers for tests that build targets by hand: built as start-up builds them.

`provider_of` runs core.providers.provider.build_provider, so a target's provider carries the
typed settings, adapter, transport and upstream the core would give it. Kinds the core does not
know (the tests' "stub") become a provider with no adapter, serving through `upstream`.
"""

from __future__ import annotations

from dataclasses import replace

from core.providers.adapters import KIND_MODULES
from core.providers.provider import Provider, build_provider
from core.providers.upstream import Upstream
from core.startup import no_session
from shared.config import Config, CoreConfig, ProviderConfig
from shared.config_core import parse_core

CORE: CoreConfig = parse_core(None, {})


def provider_of(config: ProviderConfig, upstream: Upstream | None = None) -> Provider:
    """The Provider start-up builds from `config`, its upstream replaced by `upstream` if given."""
    if config.kind == "mock" or config.kind in KIND_MODULES:
        provider = build_provider(config, CORE, no_session)
    else:  # a kind of the tests' own: the mock's build, under its own kind
        as_mock = build_provider(replace(config, kind="mock", options={}), CORE, no_session)
        provider = replace(as_mock, kind=config.kind, settings=None)
    return provider if upstream is None else replace(provider, upstream=upstream)


def providers_of(config: Config) -> dict[str, Provider]:
    """Every configured provider, as the registry gets them at start-up."""
    return {name: provider_of(provider) for name, provider in config.providers.items()}
