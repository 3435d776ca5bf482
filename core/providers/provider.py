"""One `Provider` per configured provider, built once at start-up (core/startup.py).

A Provider is all the core knows of a provider, in one object that every target of it carries:
its name and kind, the declared settings a request reads (base URL, keys as `Secret`s, headers,
timeout), the kind's typed, frozen settings (parsed from `options` by its adapter, with any
credential option wrapped as a Secret), the adapter, the Transport that sends for it (with the
adapter's signer and the connect, total and idle timeouts) and the Upstream chat calls. So no
request parses options or looks a provider's parts up by name, and the raw `options` mapping,
which may hold credentials in plaintext, is not kept past start-up.

The built-in `mock` is a provider like the others, with an in-process Upstream and no adapter;
its Transport is never used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from core.providers.adapters import load_adapter
from core.providers.adapters.base import Adapter, RequestSigner
from core.providers.adapters.gemini import GeminiAdapter
from core.providers.client import ProviderClient
from core.providers.gemini_cache import GeminiUpstream
from core.providers.mock import MockUpstream, parse_mock_options
from core.providers.transport import BodyLimits, Timeouts, Transport
from core.providers.upstream import HttpUpstream, Upstream
from shared.config import CoreConfig, ProviderConfig
from shared.secret import Secret

# The core's one client for providers (core/app.py builds it in the lifespan; until then, and
# for a config check, getting it raises).
SessionGetter = Callable[[], ProviderClient]
# The transport's total timeout is a backstop just behind the dispatcher's own clock (first
# byte, completion), which is capped at the provider's total and must fire first: it knows the
# upstream had the request and does not retry it there.
TRANSPORT_MARGIN_S = 1.0


@dataclass(frozen=True, slots=True, eq=False)
class Provider:
    """A configured provider as the core runs it; compared by identity (one per name)."""

    name: str
    kind: str
    base_url: str | None
    api_keys: tuple[Secret, ...]
    headers: Mapping[str, str]
    timeout_s: float | None  # None: core.upstream_timeout
    allow_any_model: bool
    settings: object  # the kind's typed settings (read through adapters.base.settings_of)
    adapter: Adapter | None  # None: the in-process mock, which translates nothing
    transport: Transport
    upstream: Upstream


def build_provider(config: ProviderConfig, core: CoreConfig, session: SessionGetter) -> Provider:
    """The provider `config` declares; raises ConfigError naming the bad key."""
    if config.kind == "mock":
        options = parse_mock_options(config.options, f"providers.{config.name}.options")
        transport = _transport(config, core, session, None)
        return _provider(config, options, None, transport, MockUpstream(options))
    adapter = load_adapter(config.kind, f"providers.{config.name}.kind")
    settings = adapter.check_provider(config)
    transport = _transport(config, core, session, adapter.make_signer(settings))
    upstream: HttpUpstream
    if isinstance(adapter, GeminiAdapter):  # explicit context caches (core.providers.gemini_cache)
        upstream = GeminiUpstream(adapter, transport, core.resilience.max_event_bytes)
    else:
        upstream = HttpUpstream(adapter, transport, core.resilience.max_event_bytes)
    return _provider(config, settings, adapter, transport, upstream)


def _transport(
    config: ProviderConfig, core: CoreConfig, session: SessionGetter, signer: RequestSigner | None
) -> Transport:
    timeouts = Timeouts(
        total_s=(config.timeout_s or core.upstream_timeout_s) + TRANSPORT_MARGIN_S,
        connect_s=core.connect_timeout_s,
    )
    resilience = core.resilience
    limits = BodyLimits(
        idle_timeout_s=resilience.stream_idle_timeout_s,
        min_bytes=resilience.stream_min_bytes,
        window_s=resilience.stream_throughput_window_s,
        max_response_bytes=core.max_response_bytes,
    )
    return Transport(session, timeouts, signer, limits)


def _provider(
    config: ProviderConfig,
    settings: object,
    adapter: Adapter | None,
    transport: Transport,
    upstream: Upstream,
) -> Provider:
    return Provider(
        name=config.name,
        kind=config.kind,
        base_url=config.base_url,
        api_keys=config.api_keys,
        headers=config.headers,
        timeout_s=config.timeout_s,
        allow_any_model=config.allow_any_model,
        settings=settings,
        adapter=adapter,
        transport=transport,
        upstream=upstream,
    )
