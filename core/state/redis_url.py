"""Where the lean client connects: a redis://, rediss:// or unix:// URL, read as redis-py reads it.

The URL is parsed by redis-py's own `parse_url` and the TLS context built by redis-py's own
`RedisSSLContext` with `SSLConnection`'s defaults (certificate required, host name checked), so
one URL means the same server, database, credentials and TLS checks to both clients. Query
parameters the lean client would not honour are refused at start-up rather than ignored.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.connection import RedisSSLContext, SSLConnection, parse_url

# URL query parameter -> RedisSSLContext argument.
_TLS_OPTIONS = {
    "ssl_keyfile": "keyfile",
    "ssl_certfile": "certfile",
    "ssl_password": "password",
    "ssl_cert_reqs": "cert_reqs",
    "ssl_ca_certs": "ca_certs",
    "ssl_ca_path": "ca_path",
    "ssl_check_hostname": "check_hostname",
    "ssl_ciphers": "ciphers",
}
_PLAIN = frozenset({"host", "port", "path", "db", "username", "password", "connection_class"})


@dataclass(frozen=True, slots=True)
class RedisEndpoint:
    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None  # a unix socket
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: ssl.SSLContext | None = None
    timeout_s: float | None = None  # socket_timeout from the URL, when given

    @property
    def handshake(self) -> list[tuple[Any, ...]]:
        """Commands every new connection sends before it is used (as redis-py's on_connect)."""
        commands: list[tuple[Any, ...]] = []
        if self.password is not None:
            commands.append(
                ("AUTH", self.username, self.password) if self.username else ("AUTH", self.password)
            )
        if self.db:
            commands.append(("SELECT", self.db))
        return commands


def parse_endpoint(url: str) -> RedisEndpoint:
    """Raises ValueError for a URL redis-py refuses or a parameter the lean client lacks."""
    kwargs: dict[str, Any] = dict(parse_url(url))
    tls_args = {_TLS_OPTIONS[k]: kwargs.pop(k) for k in list(kwargs) if k in _TLS_OPTIONS}
    timeout = kwargs.pop("socket_timeout", None)
    unknown = sorted(set(kwargs) - _PLAIN)
    if unknown:
        raise ValueError(f"redis URL parameter not supported: {', '.join(unknown)}")
    tls = None
    if kwargs.get("connection_class") is SSLConnection:
        tls_args.setdefault("cert_reqs", "required")
        tls_args.setdefault("check_hostname", True)
        tls = RedisSSLContext(**tls_args).get()
    elif tls_args:
        raise ValueError("redis URL: ssl_* parameters need a rediss:// URL")
    if url.startswith("unix://") and not kwargs.get("path"):
        raise ValueError("redis URL: unix:// needs a socket path")
    return RedisEndpoint(
        host=kwargs.get("host", "127.0.0.1"),
        port=int(kwargs.get("port", 6379)),
        path=kwargs.get("path"),
        db=int(kwargs.get("db", 0)),
        username=kwargs.get("username"),
        password=kwargs.get("password"),
        tls=tls,
        timeout_s=float(timeout) if timeout is not None else None,
    )
