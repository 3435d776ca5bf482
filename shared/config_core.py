"""The core's part of interlock.yaml: `core` (listeners, limits, remote images, resilience)
and `providers` (kinds, keys held as Secret, options, per-key limits).

Parsed once at start-up by shared.config; nothing here runs per request.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from shared import configparse as cp
from shared.config_edge import core_address
from shared.config_resilience import ResilienceConfig, parse_resilience
from shared.config_server import CORE_SERVER, ServerConfig, parse_server
from shared.configparse import ConfigError
from shared.secret import Secret
from shared.secret_sources import as_secret

DEFAULT_CORE_ADMIN_PORT = 8082


@dataclass(frozen=True)
class CoreConfig:
    host: str
    port: int
    max_body_bytes: int
    connect_timeout_s: float
    upstream_timeout_s: float
    pool_size: int
    # One whole upstream answer (non-streaming chat, passthrough, embeddings); bigger ones fail
    # over as "upstream response too large" instead of growing the core's memory.
    max_response_bytes: int = 32 * 1024 * 1024
    # The largest upload (a transcription's multipart body), spooled as it is verified (memory
    # up to upload_memory_bytes, then an unlinked temporary file in upload_dir); beyond: a 413.
    max_upload_bytes: int = 25 * 1024 * 1024 + 256 * 1024
    upload_memory_bytes: int = 1024 * 1024
    upload_dir: str | None = None  # the temporary files' directory (else the system's)
    # Remote images fetched for providers that need bytes (SSRF-guarded, core/images/fetcher.py).
    image_max_bytes: int = 5 * 1024 * 1024  # one image: Anthropic's per-image cap
    image_max_total_bytes: int = 15 * 1024 * 1024  # one request: ~20 MB once base64-encoded
    image_max_count: int = 16  # remote image URLs per request (Bedrock takes 20 per message)
    image_fetch_timeout_s: float = 10.0  # one image, all redirect hops included
    image_fetch_concurrency: int = 4  # fetches in flight for one request
    image_max_concurrent_fetches: int = 32  # fetches in flight for the whole process
    image_allow_private_networks: bool = False  # only for tests and closed networks
    # Exact (address, port) peers exempt from the address policy, e.g. an internal image store.
    image_allow_hosts: tuple[tuple[str, int], ...] = ()
    # Stored Responses API responses (previous_response_id, GET/DELETE /v1/responses/{id}):
    # kept this long in the state store, per tenant; a bigger entry is not kept.
    responses_ttl_s: float = 30 * 86400.0
    responses_max_bytes: int = 1024 * 1024
    resilience: ResilienceConfig = field(default_factory=ResilienceConfig)
    server: ServerConfig = CORE_SERVER
    # /metrics and /readyz are served only on this listener (same process), never on `port`.
    admin_host: str = "127.0.0.1"
    admin_port: int = DEFAULT_CORE_ADMIN_PORT


DEFAULT_BURST = 0.1


@dataclass(frozen=True)
class RateLimit:
    rpm: int | None  # requests per minute
    tpm: int | None  # tokens per minute (prompt estimate + max output, settled to actual)
    # How much of a minute's limit may be spent at once (the buckets' capacity, as a fraction
    # of rpm/tpm): any 60-second window admits at most limit x (1 + burst), rounded up.
    burst: float = DEFAULT_BURST


@dataclass(frozen=True)
class ProviderConfig:
    """A provider's settings as declared. Keys are held as `Secret`s from the moment the config
    is loaded, so no repr, log line or traceback of a config can print them; `options` (the
    kind's own, which may hold credentials such as Bedrock's) is left out of the repr, and the
    core's adapter parses it once into typed settings that wrap those credentials
    (core/providers/provider.py)."""

    name: str = field(metadata=cp.read_from())  # the key it is filed under in `providers`
    kind: str
    base_url: str | None
    api_keys: tuple[Secret, ...] = field(metadata=cp.read_from("api_key", "api_keys"))
    headers: dict[str, str]
    timeout_s: float | None
    allow_any_model: bool
    options: dict[str, Any] = field(default_factory=dict, repr=False)
    # Per-key limits, each key of the pool on its own, enforced across replicas.
    key_rpm: int | None = field(default=None, metadata=cp.read_from("key_limits"))
    key_tpm: int | None = field(default=None, metadata=cp.read_from("key_limits"))

    def __post_init__(self) -> None:
        # Whoever builds one (config loading, tests, tools): plaintext never stays plaintext.
        keys = tuple(k if isinstance(k, Secret) else Secret(k) for k in self.api_keys)
        object.__setattr__(self, "api_keys", keys)


_CORE = cp.keys_of(CoreConfig)
_PROVIDER = cp.keys_of(ProviderConfig)
_RATE = cp.keys_of(RateLimit)


def parse_rate_limit(raw: Any, path: str) -> RateLimit:
    """{rpm, tpm}, each optional: a tier's or tenant's limits, or a provider's per key."""
    s = cp.section(raw, path, _RATE)
    rpm, tpm = (cp.integer(s, k, path, 1, 1, 10**12) if k in s else None for k in ("rpm", "tpm"))
    burst = s.get("burst", DEFAULT_BURST)
    if not isinstance(burst, int | float) or isinstance(burst, bool) or not 0 < burst <= 1:
        raise ConfigError(f"{path}.burst: expected a fraction of the limit in (0, 1]")
    return RateLimit(rpm=rpm, tpm=tpm, burst=float(burst))


def parse_core(raw: Any, env: dict[str, str]) -> CoreConfig:
    s = cp.section(raw, "core", _CORE)
    host, port = core_address(s, env)  # the rule the edge's default pool follows too
    if "admin_port" not in s and env.get("INTERLOCK_CORE_ADMIN_PORT"):
        s = {**s, "admin_port": env["INTERLOCK_CORE_ADMIN_PORT"]}
    admin_port = cp.integer(s, "admin_port", "core", DEFAULT_CORE_ADMIN_PORT, 1, 65535)
    if admin_port == port:
        raise ConfigError("core.admin_port: must differ from core.port")
    connect_timeout_s = cp.duration(s, "connect_timeout", "core", 10)
    return CoreConfig(
        host=host,
        port=port,
        admin_host=cp.string(
            s, "admin_host", "core", env.get("INTERLOCK_CORE_ADMIN_HOST") or "127.0.0.1"
        ),
        admin_port=admin_port,
        server=parse_server(s.get("server"), "core.server", CORE_SERVER),
        max_body_bytes=cp.size(s, "max_body_bytes", "core", 16 * 1024 * 1024),
        connect_timeout_s=connect_timeout_s,
        upstream_timeout_s=cp.duration(s, "upstream_timeout", "core", 600),
        pool_size=cp.integer(s, "pool_size", "core", 256, 1, 100_000),
        max_response_bytes=cp.size(s, "max_response_bytes", "core", 32 * 1024 * 1024),
        max_upload_bytes=cp.size(s, "max_upload_bytes", "core", CoreConfig.max_upload_bytes),
        upload_memory_bytes=cp.size(
            s, "upload_memory_bytes", "core", CoreConfig.upload_memory_bytes
        ),
        upload_dir=cp.optional_string(s, "upload_dir", "core"),
        image_max_bytes=cp.size(s, "image_max_bytes", "core", 5 * 1024 * 1024),
        image_max_total_bytes=cp.size(s, "image_max_total_bytes", "core", 15 * 1024 * 1024),
        image_max_count=cp.integer(s, "image_max_count", "core", 16, 1, 1000),
        image_fetch_timeout_s=cp.duration(s, "image_fetch_timeout", "core", 10),
        image_fetch_concurrency=cp.integer(s, "image_fetch_concurrency", "core", 4, 1, 64),
        image_max_concurrent_fetches=cp.integer(
            s, "image_max_concurrent_fetches", "core", 32, 1, 10_000
        ),
        image_allow_private_networks=cp.boolean(s, "image_allow_private_networks", "core", False),
        image_allow_hosts=tuple(
            _peer(entry, "core.image_allow_hosts")
            for entry in cp.string_list(s, "image_allow_hosts", "core")
        ),
        responses_ttl_s=cp.duration(s, "responses_ttl", "core", 30 * 86400.0),
        responses_max_bytes=cp.size(s, "responses_max_bytes", "core", 1024 * 1024),
        resilience=_resilience(s.get("resilience"), connect_timeout_s),
    )


def _resilience(raw: Any, connect_timeout_s: float) -> ResilienceConfig:
    """The dispatcher's clocks (first byte, completion) include the connect phase, and must only
    fire after it: a call that could not even connect is the transport's to report (as refused,
    which fails over at once), never a timed-out call the upstream may have had."""
    resilience = parse_resilience(raw)
    for key, seconds in (
        ("first_byte_timeout", resilience.first_byte_timeout_s),
        ("completion_timeout", resilience.completion_timeout_s),
    ):
        if seconds <= connect_timeout_s:
            raise ConfigError(
                f"core.resilience.{key}: must exceed core.connect_timeout "
                f"({seconds:g}s <= {connect_timeout_s:g}s)"
            )
    return resilience


def _peer(entry: str, path: str) -> tuple[str, int]:
    """An exact peer "192.0.2.7:8080" or "[2001:db8::7]:443": numeric, because the image
    guard decides on the address a socket connects to, never on a name."""
    host, sep, port = entry.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        address = ipaddress.ip_address(host)
        number = int(port) if sep and port.isascii() and port.isdigit() else 0
    except ValueError:
        number = 0
    if not 0 < number < 65536:
        raise ConfigError(f"{path}: expected numeric address:port entries, got {entry!r}")
    return str(address), number


def parse_providers(raw: Any) -> dict[str, ProviderConfig]:
    if raw is None:
        raise ConfigError("providers: required (at least one provider)")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("providers: expected a mapping of provider name to settings")
    out = {}
    for name, entry in raw.items():
        path = f"providers.{name}"
        s = cp.section(entry, path, _PROVIDER)
        keys = [
            as_secret(key, f"{path}.api_keys[{i}]")
            for i, key in enumerate(cp.string_list(s, "api_keys", path))
        ]
        single = cp.optional_string(s, "api_key", path)
        if single:  # a value, ${ENV}, or a reference (aws-sm://...) read at start-up
            keys.insert(0, as_secret(single, f"{path}.api_key"))
        base_url = cp.optional_string(s, "base_url", path)
        if base_url is not None and not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"{path}.base_url: expected an http(s) URL")
        options = s.get("options") or {}
        if not isinstance(options, dict):
            raise ConfigError(f"{path}.options: expected a mapping")
        timeout = cp.duration(s, "timeout", path, 0) if "timeout" in s else None
        key_limits = parse_rate_limit(s.get("key_limits"), f"{path}.key_limits")
        out[str(name)] = ProviderConfig(
            name=str(name),
            kind=cp.string(s, "kind", path),
            base_url=base_url.rstrip("/") if base_url else None,
            api_keys=tuple(keys),
            headers=cp.string_map(s, "headers", path),
            timeout_s=timeout,
            allow_any_model=cp.boolean(s, "allow_any_model", path, False),
            options=options,
            key_rpm=key_limits.rpm,
            key_tpm=key_limits.tpm,
        )
    return out
