"""interlock.yaml: one file configures edge, core, providers, models and routes.

Loaded once at start-up into frozen dataclasses; nothing here runs per request. With no file,
`embedded_defaults()` gives a working stack (mock provider, plus any provider whose API key is in
the environment) so `make run` needs no set-up.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shared import claims
from shared import configparse as cp
from shared.config_auth import networks, revocation_settings, tenant_cidrs
from shared.config_models import ModelConfig, TargetConfig, parse_aliases, parse_models
from shared.config_resilience import ResilienceConfig, parse_resilience
from shared.config_server import CORE_SERVER, EDGE_SERVER, ServerConfig, parse_server
from shared.configparse import ConfigError
from shared.hop import DEFAULT_MAX_SKEW_S
from shared.secret import Secret

__all__ = [
    "Config",
    "ConfigError",
    "ModelConfig",
    "ResilienceConfig",
    "ServerConfig",
    "TargetConfig",
    "load_config",
]

DEFAULT_EDGE_PORT = 8080
DEFAULT_CORE_PORT = 8081
DEFAULT_CORE_ADMIN_PORT = 8082


@dataclass(frozen=True)
class AuthConfig:
    issuer: str
    audience: str
    algorithm: str
    jwks_file: Path
    jwks_inline: str | None
    signing_key_file: Path
    max_ttl_s: float
    leeway_s: float
    max_header_bytes: int
    cache_size: int
    jwks_url: str | None = None  # fetched at start-up and refreshed: key rotation
    jwks_refresh_s: float = 300.0  # 0: never re-read (file) or re-fetch (URL)
    # Revocation list (shared/revocation.py): a file (`interlock token revoke` writes it) or a
    # URL, re-read every revocation_refresh_s. When set explicitly it must load at start-up;
    # the default file may be absent (a fresh install has revoked nothing).
    revocation_file: Path = Path(".interlock/revocations.json")
    revocation_url: str | None = None
    revocation_refresh_s: float = 10.0
    revocation_required: bool = False
    # Per-tenant client networks (edge-enforced, on top of a token's own `cidrs` claim).
    tenant_cidrs: dict[str, tuple[claims.Network, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class HopConfig:
    secret: str | None  # None: resolved from INTERLOCK_HOP_SECRET or the state dir at start-up
    max_skew_s: int  # signing time vs the core's clock; hop nonces are remembered this long


@dataclass(frozen=True)
class RouteConfig:
    models: tuple[str, ...]  # glob patterns over the requested model name
    tenants: tuple[str, ...]  # empty = any tenant
    pool: str


@dataclass(frozen=True)
class EdgeConfig:
    host: str
    port: int
    max_body_bytes: int
    pools: dict[str, tuple[str, ...]]
    routes: tuple[RouteConfig, ...]
    default_pool: str
    core_timeout_s: float
    # TLS to https:// core pools: a CA bundle (else the system's), and a client pair for mTLS.
    core_ca_file: Path | None = None
    core_client_cert: Path | None = None
    core_client_key: Path | None = None
    # Proxies whose X-Forwarded-For is believed (client address for network allowlists).
    trusted_proxies: tuple[claims.Network, ...] = ()
    server: ServerConfig = EDGE_SERVER


@dataclass(frozen=True)
class CoreConfig:
    host: str
    port: int
    max_body_bytes: int
    connect_timeout_s: float
    upstream_timeout_s: float
    pool_size: int
    # Remote images fetched for providers that need bytes (SSRF-guarded, core/images.py).
    image_max_bytes: int = 5 * 1024 * 1024  # one image: Anthropic's per-image cap
    image_max_total_bytes: int = 15 * 1024 * 1024  # one request: ~20 MB once base64-encoded
    image_max_count: int = 16  # remote image URLs per request (Bedrock takes 20 per message)
    image_fetch_timeout_s: float = 10.0  # one image, all redirect hops included
    image_fetch_concurrency: int = 4  # fetches in flight for one request
    image_max_concurrent_fetches: int = 32  # fetches in flight for the whole process
    image_allow_private_networks: bool = False  # only for tests and closed networks
    # Exact (address, port) peers exempt from the address policy, e.g. an internal image store.
    image_allow_hosts: tuple[tuple[str, int], ...] = ()
    resilience: ResilienceConfig = field(default_factory=ResilienceConfig)
    server: ServerConfig = CORE_SERVER
    # /metrics and /readyz are served only on this listener (same process), never on `port`.
    admin_host: str = "127.0.0.1"
    admin_port: int = DEFAULT_CORE_ADMIN_PORT


# Provider options that are credentials: wrapped like api_keys, revealed only when signing.
SECRET_OPTIONS = frozenset({"secret_access_key", "session_token"})


@dataclass(frozen=True)
class ProviderConfig:
    """A provider's settings. Keys (and secret options) are held as `Secret`s from the moment
    the config is loaded, so no repr, log line or traceback of a config can print them."""

    name: str
    kind: str
    base_url: str | None
    api_keys: tuple[Secret, ...]
    headers: dict[str, str]
    timeout_s: float | None
    allow_any_model: bool
    options: dict[str, Any] = field(default_factory=dict)
    # Per-key limits, each key of the pool on its own, enforced across replicas.
    key_rpm: int | None = None
    key_tpm: int | None = None

    def __post_init__(self) -> None:
        # Whoever builds one (config loading, tests, tools): plaintext never stays plaintext.
        keys = tuple(k if isinstance(k, Secret) else Secret(k) for k in self.api_keys)
        object.__setattr__(self, "api_keys", keys)
        if any(isinstance(self.options.get(k), str) for k in SECRET_OPTIONS):
            wrapped = {
                k: Secret(v) if k in SECRET_OPTIONS and isinstance(v, str) else v
                for k, v in self.options.items()
            }
            object.__setattr__(self, "options", wrapped)


@dataclass(frozen=True)
class StateConfig:
    redis_url: str | None  # None: in-memory (single process)
    fail_open: bool  # when Redis is unreachable: per-process limits (True) or 503 (False)


@dataclass(frozen=True)
class RateLimit:
    rpm: int | None  # requests per minute
    tpm: int | None  # tokens per minute (prompt estimate + max output, settled to actual)


@dataclass(frozen=True)
class LimitsConfig:
    tiers: dict[str, RateLimit]
    tenants: dict[str, RateLimit]  # per-tenant overrides take precedence over the tier
    default_tier: str | None = None  # for tokens whose tier is not configured

    def tier_for(self, tier: str) -> str | None:
        """The configured tier a token's tier resolves to; None when it is unknown and there
        is no default tier (the core refuses such callers: never "unlimited")."""
        return tier if tier in self.tiers else self.default_tier

    def for_caller(self, tenant: str, tier: str) -> RateLimit | None:
        """The caller's limits; None only when it has no override and no tiers exist."""
        override = self.tenants.get(tenant)
        if override is not None:
            return override
        resolved = self.tier_for(tier)
        return self.tiers[resolved] if resolved is not None else None


@dataclass(frozen=True)
class Config:
    state_dir: Path
    auth: AuthConfig
    hop: HopConfig
    edge: EdgeConfig
    core: CoreConfig
    providers: dict[str, ProviderConfig]
    models: dict[str, ModelConfig]
    aliases: dict[str, str]
    source: str  # the file it came from, or "embedded defaults"
    state: StateConfig = StateConfig(None, True)
    limits: LimitsConfig = LimitsConfig({}, {})


_TOP = frozenset(
    {
        "state_dir",
        "auth",
        "hop",
        "edge",
        "core",
        "providers",
        "models",
        "aliases",
        "state",
        "limits",
    }
)
_STATE = frozenset({"redis_url", "on_redis_down"})
_LIMITS = frozenset({"tiers", "tenants", "default_tier"})
_RATE = frozenset({"rpm", "tpm"})
_AUTH = frozenset(
    {
        "issuer",
        "audience",
        "algorithm",
        "jwks_file",
        "jwks",
        "jwks_url",
        "jwks_refresh",
        "signing_key_file",
        "max_ttl",
        "leeway",
        "max_header_bytes",
        "cache_size",
        "revocation_file",
        "revocation_url",
        "revocation_refresh",
        "tenant_cidrs",
    }
)
_HOP = frozenset({"secret", "max_skew"})
_EDGE = frozenset(
    {
        "host",
        "port",
        "max_body_bytes",
        "pools",
        "routes",
        "default_pool",
        "core_timeout",
        "core_ca_file",
        "core_client_cert",
        "core_client_key",
        "trusted_proxies",
        "server",
    }
)
_ROUTE = frozenset({"models", "tenants", "pool"})
_CORE = frozenset(
    {
        "host",
        "port",
        "max_body_bytes",
        "connect_timeout",
        "upstream_timeout",
        "pool_size",
        "image_max_bytes",
        "image_max_total_bytes",
        "image_max_count",
        "image_fetch_timeout",
        "image_fetch_concurrency",
        "image_max_concurrent_fetches",
        "image_allow_private_networks",
        "image_allow_hosts",
        "resilience",
        "server",
        "admin_host",
        "admin_port",
    }
)
_PROVIDER = frozenset(
    {
        "kind",
        "base_url",
        "api_key",
        "api_keys",
        "headers",
        "timeout",
        "allow_any_model",
        "options",
        "key_limits",
    }
)
_KEY_LIMITS = frozenset({"rpm", "tpm"})


def load_config(
    path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None
) -> Config:
    """Load the config file named by `path`, $INTERLOCK_CONFIG, ./interlock.yaml, or defaults."""
    environ = dict(os.environ) if env is None else env
    chosen = path or environ.get("INTERLOCK_CONFIG")
    if chosen is None and Path("interlock.yaml").is_file():
        chosen = "interlock.yaml"
    if chosen is None:
        return parse_config(embedded_defaults(environ), "embedded defaults", environ)
    file = Path(chosen)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read config file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML ({exc})") from None
    return parse_config(raw if raw is not None else {}, str(file), environ)


# Providers `make run` adds when their key is in the environment:
# (env var, provider name, settings, example models). Any model works as "<provider>/<model>".
_ENV_PROVIDERS: tuple[tuple[str, str, dict[str, Any], tuple[str, ...]], ...] = (
    ("OPENAI_API_KEY", "openai", {"kind": "openai"}, ("gpt-4o-mini", "gpt-4.1")),
    ("ANTHROPIC_API_KEY", "anthropic", {"kind": "anthropic"}, ("claude-sonnet-4-5",)),
    ("GEMINI_API_KEY", "gemini", {"kind": "gemini"}, ("gemini-2.5-flash",)),
    ("MISTRAL_API_KEY", "mistral", {"kind": "openai", "options": {"preset": "mistral"}}, ()),
    ("GROQ_API_KEY", "groq", {"kind": "openai", "options": {"preset": "groq"}}, ()),
    ("DEEPSEEK_API_KEY", "deepseek", {"kind": "openai", "options": {"preset": "deepseek"}}, ()),
)


def embedded_defaults(env: dict[str, str]) -> dict[str, Any]:
    """The zero-set-up config: the mock provider, plus real providers whose keys are set."""
    providers: dict[str, Any] = {"mock": {"kind": "mock", "allow_any_model": True}}
    models: dict[str, Any] = {
        "mock-1": {"provider": "mock", "model": "mock-1"},
        "mock-large": {"provider": "mock", "model": "mock-large"},
    }
    for variable, name, settings, examples in _ENV_PROVIDERS:
        if not env.get(variable):
            continue
        providers[name] = {**settings, "api_key": f"${{{variable}}}", "allow_any_model": True}
        if name == "openai" and env.get("OPENAI_BASE_URL"):
            providers[name]["base_url"] = "${OPENAI_BASE_URL}"
        for model in examples:
            models[model] = {"provider": name, "model": model}
    return {"providers": providers, "models": models, "aliases": {"default": "mock-1"}}


def parse_config(raw: Any, source: str, env: dict[str, str]) -> Config:
    top = cp.section(cp.interpolate(raw, "", env), "config", _TOP)
    state_dir = Path(top.get("state_dir") or env.get("INTERLOCK_HOME") or ".interlock")
    providers = _providers(top.get("providers"))
    models = parse_models(top.get("models"), set(providers))
    aliases = parse_aliases(top.get("aliases"), models)
    return Config(
        state_dir=state_dir,
        auth=_auth(top.get("auth"), state_dir),
        hop=_hop(top.get("hop")),
        edge=_edge(top.get("edge"), env),
        core=_core(top.get("core"), env),
        providers=providers,
        models=models,
        aliases=aliases,
        source=source,
        state=_state(top.get("state"), env),
        limits=_limits(top.get("limits")),
    )


def _state(raw: Any, env: dict[str, str]) -> StateConfig:
    s = cp.section(raw, "state", _STATE)
    url = cp.optional_string(s, "redis_url", "state") or env.get("REDIS_URL") or None
    if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("state.redis_url: expected a redis://, rediss:// or unix:// URL")
    mode = cp.string(s, "on_redis_down", "state", "fail_open")
    if mode not in ("fail_open", "fail_closed"):
        raise ConfigError("state.on_redis_down: expected fail_open or fail_closed")
    return StateConfig(redis_url=url, fail_open=mode == "fail_open")


def _rate_limits(raw: Any, path: str) -> dict[str, RateLimit]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of name to {{rpm, tpm}}")
    out = {}
    for name, entry in raw.items():
        where = f"{path}.{name}"
        s = cp.section(entry, where, _RATE)
        values = [
            cp.integer(s, key, where, 1, 1, 10**12) if key in s else None for key in ("rpm", "tpm")
        ]
        out[str(name)] = RateLimit(rpm=values[0], tpm=values[1])
    return out


def _limits(raw: Any) -> LimitsConfig:
    s = cp.section(raw, "limits", _LIMITS)
    tiers = _rate_limits(s.get("tiers"), "limits.tiers")
    default_tier = cp.optional_string(s, "default_tier", "limits")
    if default_tier is not None and default_tier not in tiers:
        raise ConfigError(f"limits.default_tier: no tier named {default_tier!r} in limits.tiers")
    return LimitsConfig(
        tiers=tiers,
        tenants=_rate_limits(s.get("tenants"), "limits.tenants"),
        default_tier=default_tier,
    )


def _auth(raw: Any, state_dir: Path) -> AuthConfig:
    s = cp.section(raw, "auth", _AUTH)
    algorithm = cp.string(s, "algorithm", "auth", "ES256")
    if algorithm not in ("ES256", "EdDSA"):
        raise ConfigError("auth.algorithm: expected ES256 or EdDSA")
    max_ttl = cp.duration(s, "max_ttl", "auth", 3600)
    if max_ttl <= 0:
        raise ConfigError("auth.max_ttl: must be positive")
    return AuthConfig(
        issuer=cp.string(s, "issuer", "auth", "interlock"),
        audience=cp.string(s, "audience", "auth", "interlock"),
        algorithm=algorithm,
        jwks_file=Path(cp.optional_string(s, "jwks_file", "auth") or state_dir / "jwks.json"),
        jwks_inline=cp.optional_string(s, "jwks", "auth"),
        jwks_url=_jwks_url(s),
        jwks_refresh_s=cp.duration(s, "jwks_refresh", "auth", 300),
        signing_key_file=Path(
            cp.optional_string(s, "signing_key_file", "auth") or state_dir / "signing-key.pem"
        ),
        max_ttl_s=max_ttl,
        leeway_s=cp.duration(s, "leeway", "auth", 30),
        max_header_bytes=cp.integer(s, "max_header_bytes", "auth", 8192, 256, 65536),
        cache_size=cp.integer(s, "cache_size", "auth", 10000, 1, 10_000_000),
        tenant_cidrs=tenant_cidrs(s.get("tenant_cidrs")),
        **revocation_settings(s, state_dir),
    )


def _jwks_url(s: dict[str, Any]) -> str | None:
    url = cp.optional_string(s, "jwks_url", "auth")
    if url is not None and not url.startswith(("https://", "http://")):
        raise ConfigError("auth.jwks_url: expected an http(s) URL")
    if url is not None and s.get("jwks"):
        raise ConfigError("auth.jwks_url: give either jwks or jwks_url, not both")
    return url


def _hop(raw: Any) -> HopConfig:
    s = cp.section(raw, "hop", _HOP)
    secret = cp.optional_string(s, "secret", "hop")
    if secret is not None and len(secret) < 32:
        raise ConfigError("hop.secret: must be at least 32 characters")
    max_skew = cp.duration(s, "max_skew", "hop", DEFAULT_MAX_SKEW_S)
    if not 1 <= max_skew <= 600:
        # Nonces are remembered for the whole window: a long one costs state store memory.
        raise ConfigError("hop.max_skew: expected between 1s and 10m")
    return HopConfig(secret=secret, max_skew_s=int(max_skew))


def _port(s: dict[str, Any], path: str, env_name: str, env: dict[str, str], default: int) -> int:
    if "port" not in s and env.get(env_name):
        s = {**s, "port": env[env_name]}
    return cp.integer(s, "port", path, default, 0, 65535)


def _edge(raw: Any, env: dict[str, str]) -> EdgeConfig:
    s = cp.section(raw, "edge", _EDGE)
    port = _port(s, "edge", "INTERLOCK_EDGE_PORT", env, DEFAULT_EDGE_PORT)
    core_url = env.get("INTERLOCK_CORE_URL") or (
        f"http://127.0.0.1:{env.get('INTERLOCK_CORE_PORT') or DEFAULT_CORE_PORT}"
    )
    pools_raw = s.get("pools") or {"default": [core_url]}
    if not isinstance(pools_raw, dict) or not pools_raw:
        raise ConfigError("edge.pools: expected a mapping of pool name to a list of core URLs")
    pools: dict[str, tuple[str, ...]] = {}
    for name, urls in pools_raw.items():
        urls_list = cp.string_list({"urls": urls}, "urls", f"edge.pools.{name}")
        if not urls_list:
            raise ConfigError(f"edge.pools.{name}: needs at least one core URL")
        for url in urls_list:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"edge.pools.{name}: {url!r} is not an http(s) URL")
        pools[str(name)] = tuple(url.rstrip("/") for url in urls_list)
    default_pool = cp.string(
        s, "default_pool", "edge", "default" if "default" in pools else next(iter(pools))
    )
    if default_pool not in pools:
        raise ConfigError(f"edge.default_pool: no pool named {default_pool!r}")
    if ("core_client_cert" in s) != ("core_client_key" in s):
        raise ConfigError("edge.core_client_cert: give both core_client_cert and core_client_key")
    routes_raw = s.get("routes") or []
    if not isinstance(routes_raw, list):
        raise ConfigError("edge.routes: expected a list")
    routes = []
    for i, entry in enumerate(routes_raw):
        path = f"edge.routes[{i}]"
        r = cp.section(entry, path, _ROUTE)
        pool = cp.string(r, "pool", path)
        if pool not in pools:
            raise ConfigError(f"{path}.pool: no pool named {pool!r}")
        routes.append(
            RouteConfig(
                models=cp.string_list(r, "models", path, ("*",)),
                tenants=cp.string_list(r, "tenants", path),
                pool=pool,
            )
        )
    return EdgeConfig(
        host=cp.string(s, "host", "edge", env.get("INTERLOCK_EDGE_HOST") or "127.0.0.1"),
        port=port,
        max_body_bytes=cp.size(s, "max_body_bytes", "edge", 16 * 1024 * 1024),
        pools=pools,
        routes=tuple(routes),
        default_pool=default_pool,
        core_timeout_s=cp.duration(s, "core_timeout", "edge", 900),
        core_ca_file=_path(s, "core_ca_file"),
        core_client_cert=_path(s, "core_client_cert"),
        core_client_key=_path(s, "core_client_key"),
        trusted_proxies=networks(s.get("trusted_proxies"), "edge.trusted_proxies"),
        server=parse_server(s.get("server"), "edge.server", EDGE_SERVER),
    )


def _path(s: dict[str, Any], key: str) -> Path | None:
    value = cp.optional_string(s, key, "edge")
    return Path(value) if value else None


def _core(raw: Any, env: dict[str, str]) -> CoreConfig:
    s = cp.section(raw, "core", _CORE)
    port = _port(s, "core", "INTERLOCK_CORE_PORT", env, DEFAULT_CORE_PORT)
    if "admin_port" not in s and env.get("INTERLOCK_CORE_ADMIN_PORT"):
        s = {**s, "admin_port": env["INTERLOCK_CORE_ADMIN_PORT"]}
    admin_port = cp.integer(s, "admin_port", "core", DEFAULT_CORE_ADMIN_PORT, 1, 65535)
    if admin_port == port:
        raise ConfigError("core.admin_port: must differ from core.port")
    return CoreConfig(
        host=cp.string(s, "host", "core", env.get("INTERLOCK_CORE_HOST") or "127.0.0.1"),
        port=port,
        admin_host=cp.string(
            s, "admin_host", "core", env.get("INTERLOCK_CORE_ADMIN_HOST") or "127.0.0.1"
        ),
        admin_port=admin_port,
        server=parse_server(s.get("server"), "core.server", CORE_SERVER),
        max_body_bytes=cp.size(s, "max_body_bytes", "core", 16 * 1024 * 1024),
        connect_timeout_s=cp.duration(s, "connect_timeout", "core", 10),
        upstream_timeout_s=cp.duration(s, "upstream_timeout", "core", 600),
        pool_size=cp.integer(s, "pool_size", "core", 256, 1, 100_000),
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
        resilience=parse_resilience(s.get("resilience")),
    )


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


def _providers(raw: Any) -> dict[str, ProviderConfig]:
    if raw is None:
        raise ConfigError("providers: required (at least one provider)")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("providers: expected a mapping of provider name to settings")
    out = {}
    for name, entry in raw.items():
        path = f"providers.{name}"
        s = cp.section(entry, path, _PROVIDER)
        keys = cp.string_list(s, "api_keys", path)
        single = cp.optional_string(s, "api_key", path)
        if single:
            keys = (single, *keys)
        base_url = cp.optional_string(s, "base_url", path)
        if base_url is not None and not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"{path}.base_url: expected an http(s) URL")
        options = s.get("options") or {}
        if not isinstance(options, dict):
            raise ConfigError(f"{path}.options: expected a mapping")
        timeout = cp.duration(s, "timeout", path, 0) if "timeout" in s else None
        limits = cp.section(s.get("key_limits"), f"{path}.key_limits", _KEY_LIMITS)
        key_rpm, key_tpm = (
            cp.integer(limits, k, f"{path}.key_limits", 1, 1, 10**12) if k in limits else None
            for k in ("rpm", "tpm")
        )
        out[str(name)] = ProviderConfig(
            name=str(name),
            kind=cp.string(s, "kind", path),
            base_url=base_url.rstrip("/") if base_url else None,
            api_keys=tuple(Secret(key) for key in keys),
            headers=cp.string_map(s, "headers", path),
            timeout_s=timeout,
            allow_any_model=cp.boolean(s, "allow_any_model", path, False),
            options=options,
            key_rpm=key_rpm,
            key_tpm=key_tpm,
        )
    return out
