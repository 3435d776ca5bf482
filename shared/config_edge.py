"""The edge's part of interlock.yaml: `auth` (tenant tokens, revocation, client networks),
`hop` (the edge->core credential) and `edge` (pools, routes, TLS to the cores, server limits).

The edge loads only this (`load_edge_config`): the core's sections (`providers`, `models`, ...)
may be absent from an edge's file and are never read by it, so an edge needs neither a dummy
provider nor the core's secrets in its environment. The full loader (shared/config.py) builds
the same fields with the same functions. Parsed once at start-up; nothing here runs per request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared import claims
from shared import configparse as cp
from shared.config_auth import (
    SecretsConfig,
    check_secret,
    networks,
    parse_secrets,
    revocation_settings,
    tenant_cidrs,
)
from shared.config_file import PathLike, errors_located, read_config_file
from shared.config_headers import policy_headers
from shared.config_server import EDGE_SERVER, ServerConfig, parse_server
from shared.configparse import ConfigError
from shared.hop import DEFAULT_MAX_SKEW_S
from shared.server_write import CONTINUE_DEFER_S

DEFAULT_EDGE_PORT = 8080
DEFAULT_CORE_PORT = 8081  # where the edge's default pool points


@dataclass(frozen=True)
class AuthConfig:
    """`auth`: how the edge verifies tenant tokens. (Each settings class has a docstring: a
    dataclass without one builds it from its signature, a cold-start cost.)"""

    issuer: str
    audience: str
    algorithm: str
    jwks_file: Path
    jwks_inline: str | None = field(metadata=cp.read_from("jwks"))
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
    revocation_required: bool = field(default=False, metadata=cp.read_from())  # derived
    # Per-tenant client networks (edge-enforced, on top of a token's own `cidrs` claim).
    tenant_cidrs: dict[str, tuple[claims.Network, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class HopConfig:
    """`hop`: the credential the edge signs each request to the core with."""

    # None: resolved from INTERLOCK_HOP_SECRET or the state dir at start-up. May be a
    # reference (aws-sm://...), read at start-up and refreshed (shared.secret_refresh).
    secret: str | None = field(repr=False)
    max_skew_s: int  # signing time vs the core's clock; hop nonces are remembered this long


@dataclass(frozen=True)
class RouteConfig:
    """One `edge.routes` entry: which core pool serves these models and tenants."""

    models: tuple[str, ...]  # glob patterns over the requested model name
    tenants: tuple[str, ...]  # empty = any tenant
    pool: str


@dataclass(frozen=True)
class EdgeConfig:
    """`edge`: where it listens, the core pools it relays to and the limits on the way."""

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
    # Edge -> core timeouts (edge/corecall.py). Connect: a TCP (and TLS) handshake. Ack: until
    # the core acknowledges a request (100 Continue, before it can act on it; a bodiless GET's
    # whole answer): past it the next replica is tried. Response: after the ack, until the
    # response headers, which the core sends after a whole non-streaming answer or a stream's
    # first chunk: keep it above the core's `total_deadline` (600 s by default).
    # `core_timeout` bounds each silence after that (between stream chunks).
    core_connect_timeout_s: float = 3.0
    core_ack_timeout_s: float = 5.0
    core_response_timeout_s: float = 630.0
    # Passive outlier detection (edge/replicas.py): this many failed attempts in a row rest a
    # replica for replica_eject_base, doubling on each ejection in a row up to replica_eject_max.
    replica_eject_after: int = 3
    replica_eject_base_s: float = 10.0
    replica_eject_max_s: float = 300.0
    # The largest non-streaming core answer relayed (it is streamed through, never held whole).
    max_response_bytes: int = 64 * 1024 * 1024
    # The largest upload (multipart body) relayed, streamed through in chunks; beyond: a 413
    # naming `file`, even mid-stream (OpenAI's own audio limit is 25 MB: this is the file plus
    # its fields and framing).
    max_upload_bytes: int = 25 * 1024 * 1024 + 256 * 1024


_AUTH = cp.keys_of(AuthConfig)
_HOP = cp.keys_of(HopConfig)
_EDGE = cp.keys_of(EdgeConfig)
_ROUTE = cp.keys_of(RouteConfig)


def parse_auth(raw: Any, state_dir: Path) -> AuthConfig:
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


def parse_hop(raw: Any) -> HopConfig:
    s = cp.section(raw, "hop", _HOP)
    secret = cp.optional_string(s, "secret", "hop")
    if secret is not None:
        check_secret(secret, "hop.secret", min_chars=32)
    max_skew = cp.duration(s, "max_skew", "hop", DEFAULT_MAX_SKEW_S)
    if not 1 <= max_skew <= 600:
        # Nonces are remembered for the whole window: a long one costs state store memory.
        raise ConfigError("hop.max_skew: expected between 1s and 10m")
    return HopConfig(secret=secret, max_skew_s=int(max_skew))


def core_address(s: dict[str, Any], env: dict[str, str]) -> tuple[str, int]:
    """Where the core listens: `core.host` / `core.port`, else $INTERLOCK_CORE_HOST /
    $INTERLOCK_CORE_PORT, else 127.0.0.1:8081. The core binds to this and the edge's default
    pool points at it, with one rule, so an edge and a core started with the same file and
    environment always meet."""
    port = cp.port_setting(s, "core", "INTERLOCK_CORE_PORT", env, DEFAULT_CORE_PORT)
    return cp.string(s, "host", "core", env.get("INTERLOCK_CORE_HOST") or "127.0.0.1"), port


def default_core_url(core: Any, env: dict[str, str]) -> str:
    """The default pool when `edge.pools` is absent: $INTERLOCK_CORE_URL, else the core's own
    address from the file's `core` section (only host, port and server.tls_cert_file are read,
    and only they are interpolated: the rest of that section is the core's). A wildcard listen
    address is reached on loopback; a core serving TLS is reached over https."""
    if env.get("INTERLOCK_CORE_URL"):
        return env["INTERLOCK_CORE_URL"]
    s = core if isinstance(core, dict) else {}
    own = {k: cp.interpolate(s[k], f"core.{k}", env) for k in ("host", "port") if k in s}
    host, port = core_address(own, env)
    if port == 0:
        raise ConfigError("core.port: 0 (any free port) cannot be followed: set edge.pools")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}.get(host, host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    server = s.get("server")
    tls = isinstance(server, dict) and bool(server.get("tls_cert_file"))
    return f"{'https' if tls else 'http'}://{host}:{port}"


def parse_edge(raw: Any, env: dict[str, str], core: Any = None) -> EdgeConfig:
    """`edge`; `core` is the file's raw `core` section, read only for the default pool."""
    s = cp.section(raw, "edge", _EDGE)
    port = cp.port_setting(s, "edge", "INTERLOCK_EDGE_PORT", env, DEFAULT_EDGE_PORT)
    pools_raw = s.get("pools") or {"default": [default_core_url(core, env)]}
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
        **_core_link(s),
    )


_CORE_LINK_DURATIONS = (
    "core_connect_timeout",
    "core_ack_timeout",
    "core_response_timeout",
    "replica_eject_base",
    "replica_eject_max",
)


def _core_link(s: dict[str, Any]) -> dict[str, Any]:
    """Timeouts to the cores, replica ejection and the response cap, checked together."""
    fields: dict[str, Any] = {}
    for name in _CORE_LINK_DURATIONS:  # defaults: the dataclass's own
        fields[name + "_s"] = cp.duration(s, name, "edge", getattr(EdgeConfig, name + "_s"))
    for key, value in fields.items():
        if value <= 0:
            raise ConfigError(f"edge.{key.removesuffix('_s')}: must be positive")
    if fields["core_ack_timeout_s"] < 5 * CONTINUE_DEFER_S:  # the core may defer its ack
        raise ConfigError(f"edge.core_ack_timeout: must be at least {5 * CONTINUE_DEFER_S:g}s")
    if fields["core_response_timeout_s"] < fields["core_ack_timeout_s"]:
        raise ConfigError("edge.core_response_timeout: must be at least edge.core_ack_timeout")
    if fields["replica_eject_max_s"] < fields["replica_eject_base_s"]:
        raise ConfigError("edge.replica_eject_max: must be at least edge.replica_eject_base")
    after = EdgeConfig.replica_eject_after
    fields["replica_eject_after"] = cp.integer(s, "replica_eject_after", "edge", after, 1, 1000)
    cap = EdgeConfig.max_response_bytes
    fields["max_response_bytes"] = cp.size(s, "max_response_bytes", "edge", cap)
    upload = EdgeConfig.max_upload_bytes
    fields["max_upload_bytes"] = cp.size(s, "max_upload_bytes", "edge", upload)
    return fields


def _path(s: dict[str, Any], key: str) -> Path | None:
    value = cp.optional_string(s, key, "edge")
    return Path(value) if value else None


# interlock.yaml's top-level keys by the tier that reads them. Both loaders refuse any other
# key (a typo is an error); the edge accepts the core's sections and never reads them.
EDGE_SECTIONS = ("state_dir", "auth", "hop", "edge", "secrets")
CORE_SECTIONS = (
    "core",
    "providers",
    "models",
    "aliases",
    "state",
    "limits",
    "prices",
    "budgets",
    "ledger",
    "routing",
    "cache",
    "idempotency",
    "tracing",
    "metrics",
)
TOP_LEVEL = frozenset((*EDGE_SECTIONS, *CORE_SECTIONS))


@dataclass(frozen=True)
class EdgeTierConfig:
    """What the edge reads of interlock.yaml; the full `Config` extends it with the core's."""

    state_dir: Path
    auth: AuthConfig
    hop: HopConfig
    edge: EdgeConfig
    source: str  # the file it came from, or "embedded defaults"
    # routing.headers: client headers the core's routing rules read, relayed by the edge.
    policy_headers: tuple[str, ...]
    secrets: SecretsConfig  # how referenced secrets are refreshed (both tiers hold some)


def edge_fields(top: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """state_dir, auth, hop and edge from the top-level mapping. Only these sections are
    interpolated: a ${VAR} in the core's sections is never resolved (nor required) here."""
    own = {key: cp.interpolate(top[key], key, env) for key in EDGE_SECTIONS if key in top}
    state_dir = Path(own.get("state_dir") or env.get("INTERLOCK_HOME") or ".interlock")
    return {
        "state_dir": state_dir,
        "auth": parse_auth(own.get("auth"), state_dir),
        "hop": parse_hop(own.get("hop")),
        "edge": parse_edge(own.get("edge"), env, top.get("core")),
        "policy_headers": _policy_headers(top.get("routing"), env),
        "secrets": parse_secrets(own.get("secrets")),
    }


def _policy_headers(routing: Any, env: dict[str, str]) -> tuple[str, ...]:
    """Only `routing.headers` is read (and interpolated) here: the rest is the core's."""
    if not isinstance(routing, dict):
        return ()
    return policy_headers({"headers": cp.interpolate(routing.get("headers"), "routing", env)})


def parse_edge_config(raw: Any, source: str, env: dict[str, str]) -> EdgeTierConfig:
    top = cp.section(raw, "config", TOP_LEVEL)
    return EdgeTierConfig(source=source, **edge_fields(top, env))


def load_edge_config(
    path: PathLike | None = None, env: dict[str, str] | None = None
) -> EdgeTierConfig:
    """The edge's config from `path`, $INTERLOCK_CONFIG, ./interlock.yaml, or defaults."""
    environ = dict(os.environ) if env is None else env
    found = read_config_file(path, environ)
    raw, source = found if found is not None else ({}, "embedded defaults")
    with errors_located(source):
        return parse_edge_config(raw, source, environ)
