"""`edge.server` / `core.server`: how long a connection may take and how many one peer may hold.

uvicorn alone bounds only the idle time between requests; a client that trickles its headers or
its body (slowloris) would hold a socket and a task for as long as it likes. These limits are
enforced by the protocol classes in shared/server_protocol.py, read once at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared import configparse as cp


@dataclass(frozen=True)
class ServerConfig:
    """`edge.server` / `core.server`: connection-level limits each tier's server enforces."""

    # From connection open (or the first byte of a later request) to the end of the headers.
    # Real clients send headers in one packet; 10 s leaves room for a slow mobile link.
    header_timeout_s: float = 10.0
    # From the end of the headers to the end of the body, whatever the rate: a 16 MiB body
    # needs ~0.6 MB/s. Unterminated chunked bodies end here too (408, then close).
    body_timeout_s: float = 30.0
    # Idle time between requests on a kept-alive connection. Above the edge's aiohttp pool
    # idle time (15 s), so the client side always closes an idle connection first.
    keepalive_timeout_s: float = 75.0
    # How long the client may leave a response unread (the send buffer full, no progress at
    # all) before the connection is aborted: otherwise a client that stops reading pins a
    # stream, its upstream call and the provider key's capacity for as long as it likes.
    send_timeout_s: float = 60.0
    # After SIGTERM: how long requests in flight may take to finish before they are cancelled
    # (then the lifespan shutdown runs: the core's ledger flush). Long enough for the longest
    # stream (the core's upstream_timeout, 600 s; the edge's core_timeout, 900 s) and below
    # the orchestrator's grace period (infra/k8s: 660 s core, 960 s edge).
    drain_timeout_s: float = 600.0
    # Concurrent connections per peer address (0: no budget). A peer is the TCP peer: behind a
    # load balancer every client shares the balancer's address, so raise it or set 0 there.
    max_connections_per_client: int = 64
    # All connections of the process (0: half the open-file limit, each request on the edge
    # also holds a socket to the core). Beyond it, new connections get a 503 and are closed.
    max_connections: int = 0
    # Request line plus headers; beyond it 431 and close (httptools has no limit of its own).
    max_header_bytes: int = 64 * 1024
    backlog: int = 2048  # listen(2) queue
    # Serve TLS (every listener of the process): edge->core traffic must be encrypted unless it
    # stays on a private network. With a client CA, only clients it signed are accepted (mTLS).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None


_SERVER = cp.keys_of(ServerConfig)
EDGE_SERVER = ServerConfig(drain_timeout_s=900.0)
# Only edges connect to the core, and many edges can share one address (a NAT gateway, Lambda
# in a VPC), so the core has no per-peer budget by default; the timeouts still apply.
CORE_SERVER = ServerConfig(max_connections_per_client=0)


def parse_server(raw: Any, path: str, defaults: ServerConfig) -> ServerConfig:
    s = cp.section(raw, path, _SERVER)
    d = defaults
    config = ServerConfig(
        header_timeout_s=cp.duration(s, "header_timeout", path, d.header_timeout_s),
        body_timeout_s=cp.duration(s, "body_timeout", path, d.body_timeout_s),
        keepalive_timeout_s=cp.duration(s, "keepalive_timeout", path, d.keepalive_timeout_s),
        send_timeout_s=cp.duration(s, "send_timeout", path, d.send_timeout_s),
        drain_timeout_s=cp.duration(s, "drain_timeout", path, d.drain_timeout_s),
        max_connections_per_client=cp.integer(
            s, "max_connections_per_client", path, d.max_connections_per_client, 0, 1_000_000
        ),
        max_connections=cp.integer(s, "max_connections", path, d.max_connections, 0, 10_000_000),
        max_header_bytes=cp.size(s, "max_header_bytes", path, d.max_header_bytes),
        backlog=cp.integer(s, "backlog", path, d.backlog, 1, 65535),
        tls_cert_file=_file(s, "tls_cert_file", path),
        tls_key_file=_file(s, "tls_key_file", path),
        tls_client_ca_file=_file(s, "tls_client_ca_file", path),
    )
    if (config.tls_cert_file is None) != (config.tls_key_file is None):
        raise cp.ConfigError(f"{path}.tls_cert_file: give tls_cert_file and tls_key_file together")
    if config.tls_client_ca_file is not None and config.tls_cert_file is None:
        raise cp.ConfigError(f"{path}.tls_client_ca_file: needs tls_cert_file and tls_key_file")
    for key, value in (
        ("header_timeout", config.header_timeout_s),
        ("body_timeout", config.body_timeout_s),
        ("keepalive_timeout", config.keepalive_timeout_s),
        ("send_timeout", config.send_timeout_s),
        ("drain_timeout", config.drain_timeout_s),
    ):
        if value <= 0:
            raise cp.ConfigError(f"{path}.{key}: must be positive")
    if config.max_header_bytes < 1024:
        raise cp.ConfigError(f"{path}.max_header_bytes: at least 1KiB (a token alone needs more)")
    return config


def _file(s: dict[str, Any], key: str, path: str) -> Path | None:
    value = cp.optional_string(s, key, path)
    if not value:
        return None
    if not Path(value).is_file():
        raise cp.ConfigError(f"{path}.{key}: no such file: {value}")
    return Path(value)
