"""What the core builds from its config before it serves, and so every check it makes of it.

Provider kinds are resolved to adapters, each adapter's `check_provider` parses the provider's
options once into its typed, frozen settings (kept on the ProviderConfig the targets carry, so
no request re-derives them), upstreams get their transports (timeouts, signers), the model registry
resolves every model's targets, and the hop secret is found. `CoreState` (core/app.py) and
`interlock check-config` (core/ops/cli.py) both call `prepare_core`: the CLI approves exactly the
configs the core starts with. Nothing here opens a socket, reads from the network or starts a
task; the HTTP session is only reached through `session`, when a request is sent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from core.providers.adapters import load_adapter
from core.providers.mock import MockUpstream
from core.providers.transport import BodyLimits, Transport
from core.providers.upstream import HttpUpstream, Upstream
from core.routing.registry import ModelRegistry
from core.state.redis_url import parse_endpoint
from shared import hop
from shared.config import Config, ProviderConfig
from shared.configparse import ConfigError

SessionGetter = Callable[[], aiohttp.ClientSession]
TRANSPORT_MARGIN_S = 1.0


@dataclass(frozen=True)
class CoreParts:
    config: Config  # as loaded, with every provider's typed settings parsed
    upstreams: dict[str, Upstream]
    # One per provider called over HTTP, shared by chat, embeddings and passthrough.
    transports: dict[str, Transport]
    registry: ModelRegistry
    hop_secret: bytes


def prepare_core(config: Config, session: SessionGetter) -> CoreParts:
    """Build the config-derived parts of the core; raises ConfigError naming the bad key."""
    providers: dict[str, ProviderConfig] = {}
    upstreams: dict[str, Upstream] = {}
    transports: dict[str, Transport] = {}
    resilience = config.core.resilience
    limits = BodyLimits(
        idle_timeout_s=resilience.stream_idle_timeout_s,
        min_bytes=resilience.stream_min_bytes,
        window_s=resilience.stream_throughput_window_s,
        max_response_bytes=config.core.max_response_bytes,
    )
    for name, provider in config.providers.items():
        path = f"providers.{name}"
        if provider.kind == "mock":
            providers[name] = provider
            upstreams[name] = MockUpstream(provider.options, f"{path}.options")
            continue
        adapter = load_adapter(provider.kind, f"{path}.kind")
        provider = dataclasses.replace(provider, settings=adapter.check_provider(provider))
        providers[name] = provider
        timeout = aiohttp.ClientTimeout(
            # The dispatcher's own clock (first byte, completion) is capped at the provider's
            # total and must fire first: it knows the upstream had the request and does not
            # retry it there. The transport's total is a backstop just behind it, never a race.
            total=(provider.timeout_s or config.core.upstream_timeout_s) + TRANSPORT_MARGIN_S,
            sock_connect=config.core.connect_timeout_s,
        )
        transports[name] = Transport(session, timeout, adapter.make_signer(provider), limits)
        upstreams[name] = HttpUpstream(adapter, transports[name])
    config = dataclasses.replace(config, providers=providers)
    _check_redis_url(config.state.redis_url)
    return CoreParts(
        config=config,
        upstreams=upstreams,
        transports=transports,
        registry=ModelRegistry(config, upstreams),
        hop_secret=hop.resolve_secret(config.hop.secret, config.state_dir),
    )


def _check_redis_url(url: str | None) -> None:
    """The state store's URL as the store will read it (schemes, TLS files, parameters)."""
    if url is None:
        return
    try:
        parse_endpoint(url)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"state.redis_url: {exc}") from None


def no_session() -> aiohttp.ClientSession:
    """For checking a config only: nothing may be sent."""
    raise RuntimeError("a config check sends no requests")
