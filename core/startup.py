"""What the core builds from its config before it serves, and so every check it makes of it.

Each configured provider becomes one `Provider` (core/providers/provider.py): its adapter
resolved from the kind, its options parsed once into the kind's typed, frozen settings, its
Transport (timeouts, signer) and Upstream built. The model registry resolves every model's
targets to those Providers (and builds `routing.routes`), the routing rules are compiled
(core.routing.policy), and the hop secret is found. Referenced secrets (aws-sm://...: provider
keys, the hop secret, credential options) are read here, all in parallel, so a missing or
malformed one fails start-up naming the reference; `secrets` refreshes them once serving.
`CoreState` (core/app.py) and
`interlock check-config` (core/ops/cli.py) both call `prepare_core`: the CLI approves exactly the
configs the core starts with. Apart from reading referenced secrets, nothing here opens a
socket, reads from the network or starts a task; the providers' HTTP client
(core.providers.client) is only reached through `session`, when a request is sent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

from core.providers.client import ProviderClient
from core.providers.provider import Provider, SessionGetter, build_provider
from core.routing.policy.rules import Policy, build_policy
from core.routing.registry import ModelRegistry
from core.spend.pricing import CataloguePricing, build_pricing
from core.state.cluster import ClusterClient
from core.state.redis_url import parse_endpoint
from shared import hop
from shared.config import Config
from shared.config_file import errors_located
from shared.configparse import ConfigError
from shared.secret import Secret
from shared.secret_refresh import SecretRefresher, references


@dataclass(frozen=True)
class CoreParts:
    config: Config  # as loaded
    providers: dict[str, Provider]  # by name, each built once; targets carry them
    registry: ModelRegistry
    hop_secret: Secret  # a SecretRef when referenced: rotates in place
    pricing: CataloguePricing  # the catalogue under the operator's `prices` (core.spend)
    policy: Policy  # routing.rules compiled (core.routing.policy); empty without rules
    secrets: SecretRefresher  # every referenced secret, read; started by the core's lifespan


def prepare_core(config: Config, session: SessionGetter) -> CoreParts:
    """Build the config-derived parts of the core; raises ConfigError naming the bad key
    (and its line, when the config came from a file)."""
    with errors_located(config.source):
        return _prepare(config, session)


def _prepare(config: Config, session: SessionGetter) -> CoreParts:
    providers = {
        name: build_provider(provider, config.core, session)
        for name, provider in config.providers.items()
    }
    _check_redis_url(config.state.redis_url, config.state.cluster)
    registry = ModelRegistry(config, providers)
    policy = build_policy(
        config.routing, registry.named, lambda model: registry.resolve(model) is not None
    )
    hop_secret = hop.resolve_secret(config.hop.secret, config.state_dir, verifier=True)
    secrets = SecretRefresher(
        references([hop_secret, *_provider_secrets(providers)]), config.secrets.refresh_s
    )
    secrets.resolve_now()
    hop.check_resolved(hop_secret)
    return CoreParts(
        config=config,
        providers=providers,
        registry=registry,
        policy=policy,
        hop_secret=hop_secret,
        pricing=build_pricing(config, providers),
        secrets=secrets,
    )


def _provider_secrets(providers: dict[str, Provider]) -> Iterator[Secret]:
    """Each provider's keys and the Secrets among its kind's typed settings (credentials)."""
    for provider in providers.values():
        yield from provider.api_keys
        settings = provider.settings
        if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
            for field in dataclasses.fields(settings):
                value = getattr(settings, field.name)
                if isinstance(value, Secret):
                    yield value


def _check_redis_url(url: str | None, cluster: bool) -> None:
    """The state store's URL as the store will read it (schemes, TLS files, parameters; a
    cluster's seed: TCP, database 0)."""
    if url is None:
        return
    try:
        ClusterClient(url) if cluster else parse_endpoint(url)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"state.redis_url: {exc}") from None


def no_session() -> ProviderClient:
    """For checking a config only: nothing may be sent."""
    raise RuntimeError("a config check sends no requests")
