"""Origins and the per-origin keep-alive pool.

A connection goes back to the pool only after its response was read to its end with the peer
keeping it open (shared/h1/client.py decides). An idle one is dropped after `idle_s` (15 s by
default: below the core's 75 s keep-alive and a provider's usual 60 s, so this side ends an
idle connection, never the peer mid-request) and at most `max_idle` wait per origin. One
taken from the pool is checked first: a loss, an EOF or stray bytes seen while it sat idle
(shared/h1/connection.py) mean the peer closed it, and it is dropped rather than written to.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass

from shared.h1.connection import Connection
from shared.h1.errors import ConnectFailed, H1Timeout

_DEFAULT_PORTS = {"http": 80, "https": 443}
_ORIGINS: dict[str, Origin] = {}  # "scheme://host:port" -> its parse (a few per process)


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str  # without IPv6 brackets
    port: int
    host_header: str  # the Host header's value: the port only when it is not the default

    @property
    def tls(self) -> bool:
        return self.scheme == "https"


def parse_origin(base: str) -> Origin:
    """`http://host[:port]` or `https://...`; raises ValueError for anything else."""
    scheme, sep, authority = base.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _DEFAULT_PORTS or not authority or "@" in authority:
        raise ValueError("not an http:// or https:// origin")
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else rest
        shown = f"[{host}]"
    else:
        host, _, port_text = authority.partition(":")
        shown = host
    if port_text and not (port_text.isascii() and port_text.isdigit()):
        raise ValueError("bad port")
    default = _DEFAULT_PORTS[scheme]
    port = int(port_text) if port_text else default
    if not host or not 0 < port < 65536:
        raise ValueError("bad host or port")
    return Origin(scheme, host, port, shown if port == default else f"{shown}:{port}")


def split_url(url: str) -> tuple[Origin, str]:
    """The origin (parsed once per distinct origin) and the request target, sent verbatim."""
    slash = url.find("/", url.find("://") + 3)
    base, target = (url, "/") if slash < 0 else (url[:slash], url[slash:])
    origin = _ORIGINS.get(base)
    if origin is None:
        origin = parse_origin(base)
        if len(_ORIGINS) > 1024:
            _ORIGINS.clear()
        _ORIGINS[base] = origin
    return origin, target


class Pool:
    """Idle keep-alive connections per origin, and new ones made on demand."""

    def __init__(
        self, tls: ssl.SSLContext | None = None, idle_s: float = 15.0, max_idle: int = 100
    ) -> None:
        self._tls = tls
        self.idle_s = idle_s
        self.max_idle = max_idle
        self._idle: dict[Origin, deque[Connection]] = {}
        self._sweeper: asyncio.TimerHandle | None = None

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()  # the system's CAs, built once
        return self._tls

    async def acquire(
        self, origin: Origin, connect_timeout: float | None, fresh: bool
    ) -> Connection:
        """A pooled connection still open (the most recently used first), else a new one;
        always a new one when `fresh`."""
        idle = None if fresh else self._idle.get(origin)
        if idle:
            loop = asyncio.get_running_loop()
            oldest = loop.time() - self.idle_s
            while idle:
                connection = idle.pop()
                if connection.usable and connection.idle_since > oldest:
                    return connection
                connection.close()
        return await self._connect(origin, connect_timeout)

    async def _connect(self, origin: Origin, limit_s: float | None) -> Connection:
        loop = asyncio.get_running_loop()
        context = self._context() if origin.tls else None
        try:
            async with asyncio.timeout(limit_s):
                _, connection = await loop.create_connection(
                    lambda: Connection(loop),
                    origin.host,
                    origin.port,
                    ssl=context,
                    server_hostname=origin.host if context is not None else None,
                )
        except TimeoutError:
            raise H1Timeout("connect") from None
        except OSError as exc:  # refused, unreachable, unresolved, TLS (ssl.SSLError)
            raise ConnectFailed(f"cannot connect to {origin.host_header}: {exc}") from exc
        return connection

    def put(self, origin: Origin, connection: Connection) -> None:
        """Keeps a connection whose exchange ended cleanly, or closes it when full."""
        idle = self._idle.get(origin)
        if idle is None:
            idle = self._idle[origin] = deque()
        if len(idle) >= self.max_idle or not connection.usable:
            connection.close()
            return
        connection.end()
        connection.idle_since = connection.loop.time()
        idle.append(connection)
        if self._sweeper is None:
            self._sweeper = connection.loop.call_later(self.idle_s, self._sweep)

    def _sweep(self) -> None:
        """Closes the connections idle for longer than `idle_s` (the oldest are on the left)."""
        self._sweeper = None
        loop = asyncio.get_running_loop()
        oldest = loop.time() - self.idle_s
        left = False
        for idle in self._idle.values():
            while idle and (idle[0].idle_since <= oldest or not idle[0].usable):
                idle.popleft().close()
            left = left or bool(idle)
        if left:
            self._sweeper = loop.call_later(self.idle_s / 2, self._sweep)

    def idle_count(self, origin: Origin) -> int:
        return len(self._idle.get(origin, ()))

    def close(self) -> None:
        """Closes every idle connection (those in use are closed by their responses)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for idle in self._idle.values():
            while idle:
                idle.popleft().close()
        self._idle.clear()
