"""uvicorn's HTTP/1.1 protocols with the limits uvicorn lacks (slowloris, connection hoarding).

uvicorn bounds only the idle time after a response. A connection that never sends a request,
trickles its headers, or never finishes its body (an unterminated chunked body) is held, with
its task, for as long as the client likes. Each connection here gets one deadline at a time:

- fresh connection, or first byte of a later request -> end of headers: `header_timeout`
  (nothing received yet: closed silently; partial headers: 408, then closed);
- end of headers -> end of body: `body_timeout` (408 if no response has started, then closed);
- between requests: uvicorn's keep-alive timeout;
- and, whatever the phase, a response the client leaves unread (send buffer full, no progress)
  for `send_timeout` aborts the connection.

Headers larger than `max_header_bytes` get a 431. Each peer address may hold
`max_connections_per_client` connections and the process `max_connections`; a connection
beyond either is answered at once (429 for the peer's own budget, 503 for the process) and
closed, without reading anything from it. All answers are the OpenAI JSON error envelope (the
Anthropic one on /v1/messages once the path is known), with `connection: close`.
"""

from __future__ import annotations

import asyncio
import http
from collections.abc import Callable
from typing import Any, ClassVar, cast

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from shared.config_server import ServerConfig
from shared.errors import GatewayError
from shared.http import api_for_path
from shared.server_write import Coalescing

_FRESH, _HEADERS, _BODY, _IDLE = range(4)


class HeadersTooLarge(Exception):
    """Raised from a parser callback: the parser stops and reports a malformed request."""


def raw_error(error: GatewayError, path: str | None = None) -> bytes:
    """A complete HTTP/1.1 error response that closes the connection, for answers given by the
    protocol itself (no app, no request id)."""
    body = error.body_for(api_for_path(path or "/"))
    phrase = http.HTTPStatus(error.status).phrase
    head = (
        f"HTTP/1.1 {error.status} {phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class Budget:
    """Open connections per peer address and in total: one per server process."""

    def __init__(self, settings: ServerConfig, max_connections: int) -> None:
        self.per_client = settings.max_connections_per_client
        self.max_connections = max_connections
        self.open: dict[str, int] = {}
        self.total = 0

    def admit(self, peer: str) -> GatewayError | None:
        """Counts the connection (release() undoes it, admitted or not); says why it must be
        refused, if it must."""
        count = self.open.get(peer, 0)
        self.open[peer] = count + 1
        self.total += 1
        if self.per_client and count >= self.per_client:
            return GatewayError(
                429,
                f"too many concurrent connections from your address (limit {self.per_client})",
                code="too_many_connections",
            )
        if self.max_connections and self.total > self.max_connections:
            return GatewayError(
                503, "the gateway is at its connection limit; retry shortly", code="overloaded"
            )
        return None

    def release(self, peer: str) -> None:
        self.total -= 1
        left = self.open[peer] - 1
        if left:
            self.open[peer] = left
        else:
            del self.open[peer]


def _no_cycle() -> None:
    return None


class Watch:
    """One connection's deadline: which phase it is in and what happens when time runs out."""

    __slots__ = (
        "cycle",
        "deadline",
        "fires_at",
        "header_bytes",
        "loop",
        "phase",
        "send_timer",
        "settings",
        "timer",
        "transport",
    )

    def __init__(
        self,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        settings: ServerConfig,
        cycle: Callable[[], Any],
    ) -> None:
        self.transport = transport
        self.loop = loop
        self.settings = settings
        self.cycle = cycle  # the protocol's current RequestResponseCycle (or None)
        self.phase = _FRESH
        self.header_bytes = 0
        self.timer: asyncio.TimerHandle | None = None
        self.deadline: float | None = None
        self.fires_at = 0.0
        self.send_timer: asyncio.TimerHandle | None = None
        self._arm(settings.header_timeout_s)

    def _arm(self, seconds: float) -> None:
        """The phase's deadline. A timer that fires no later stays and, when it fires, waits
        for what is left: a kept-alive connection's requests make and cancel no timer each
        (~4 us a pair, twice a request), one fires per header timeout at most."""
        deadline = self.deadline = self.loop.time() + seconds
        if self.timer is None or self.fires_at > deadline:
            if self.timer is not None:
                self.timer.cancel()
            self.fires_at = deadline
            self.timer = self.loop.call_at(deadline, self._expired)

    def stop(self) -> None:
        """No deadline; a pending timer finds none when it fires."""
        self.deadline = None

    def _cancel(self) -> None:
        self.deadline = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def writing_paused(self) -> None:
        """The transport's buffer is full: the client is not reading what it asked for."""
        if self.send_timer is None:
            self.send_timer = self.loop.call_later(self.settings.send_timeout_s, self._stalled)

    def writing_resumed(self) -> None:
        if self.send_timer is not None:
            self.send_timer.cancel()
            self.send_timer = None

    def closed(self) -> None:
        self._cancel()
        self.writing_resumed()
        # The getter closes over the protocol, which holds this watch: a cycle that only the
        # cyclic collector's full passes would free, with the connection's transport, cycle
        # and buffers (an edge's RSS grew some MB under connection churn before they ran).
        self.cycle = _no_cycle

    def _stalled(self) -> None:
        # Nothing can be said to a client that does not read; close() would wait for the
        # buffer to drain, abort() drops it. The app's pending send returns (disconnected).
        self.send_timer = None
        self.transport.abort()

    def request_begins(self) -> None:
        """First byte of a request. A fresh connection's deadline already runs since accept."""
        if self.phase == _IDLE:
            self._arm(self.settings.header_timeout_s)
        if self.phase in (_FRESH, _IDLE):
            self.phase = _HEADERS
            self.header_bytes = 0

    def header_line(self, size: int) -> None:
        """Counts the request line and each header as the parser completes them."""
        self.header_bytes += size
        if self.header_bytes > self.settings.max_header_bytes:
            raise HeadersTooLarge  # stops the parser; the protocol's 400 path answers 431

    def refuse_malformed(self) -> None:
        """uvicorn's answer to a request its parser rejects, as a JSON envelope."""
        if self.header_bytes > self.settings.max_header_bytes:
            error = GatewayError(431, "the request headers are too large", code="invalid_header")
            self.refuse(error)
        else:
            self.refuse(GatewayError(400, "invalid HTTP request", code="invalid_request"))

    def headers_done(self) -> None:
        self.phase = _BODY
        self._arm(self.settings.body_timeout_s)

    def body_done(self) -> None:
        self.phase = _IDLE
        self.stop()

    def refuse(self, error: GatewayError, path: str | None = None) -> None:
        self.stop()
        if not self.transport.is_closing():
            self.transport.write(raw_error(error, path))
            self.transport.close()

    def _expired(self) -> None:
        self.timer = None
        deadline = self.deadline
        if deadline is None or self.transport.is_closing():
            return
        if deadline > self.loop.time() + 0.001:  # moved on since this timer was set
            self.fires_at = deadline
            self.timer = self.loop.call_at(deadline, self._expired)
            return
        self.deadline = None
        if self.phase == _FRESH:
            self.transport.close()  # nothing was sent: nobody to answer
        elif self.phase == _HEADERS:
            self.refuse(GatewayError(408, "the request headers did not arrive in time"))
        elif self.phase == _BODY:
            self._body_expired()

    def _body_expired(self) -> None:
        cycle = self.cycle()
        if cycle is None or cycle.response_started:
            self.transport.close()  # the app answered already: only the connection can end
            return
        # The app is still waiting for the body: it is told the client left (its sends become
        # no-ops), and the client gets the 408.
        cycle.disconnected = True
        cycle.message_event.set()
        error = GatewayError(408, "the request body did not arrive in time", code="timeout")
        self.refuse(error, cycle.scope.get("path"))


class _Guarded:
    """What both protocols add to uvicorn's: a Watch per connection, the connection budget, and
    write-pressure tracking. Mixed in before the uvicorn class, so `super()` reaches it."""

    settings: ClassVar[ServerConfig]
    budget: ClassVar[Budget]
    # Provided by uvicorn's protocol classes, which this is mixed into.
    client: tuple[str, int] | None
    loop: asyncio.AbstractEventLoop
    cycle: Any

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self.peer = self.client[0] if self.client else ""
        self.watch = Watch(
            cast(asyncio.Transport, transport), self.loop, self.settings, lambda: self.cycle
        )
        refusal = self.budget.admit(self.peer)
        if refusal is not None:
            self.watch.refuse(refusal)

    def connection_lost(self, exc: Exception | None) -> None:
        self.watch.closed()
        self.budget.release(self.peer)
        super().connection_lost(exc)  # type: ignore[misc]

    def pause_writing(self) -> None:
        super().pause_writing()  # type: ignore[misc]
        self.watch.writing_paused()

    def resume_writing(self) -> None:
        super().resume_writing()  # type: ignore[misc]
        self.watch.writing_resumed()

    def send_400_response(self, msg: str) -> None:
        self.watch.refuse_malformed()


class GuardedH11Protocol(_Guarded, H11Protocol):
    """uvicorn's h11 protocol with the limits above. Configure with `configured()`."""

    def data_received(self, data: bytes) -> None:
        watch = self.watch
        if watch.phase in (_FRESH, _IDLE):
            watch.request_begins()
        if watch.phase == _HEADERS:
            # h11 caps only an incomplete event; headers that arrive whole are counted here.
            end = data.find(b"\r\n\r\n")
            try:
                watch.header_line(len(data) if end < 0 else end)
            except HeadersTooLarge:
                watch.refuse_malformed()
                return
        super().data_received(data)
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            if watch.phase != _BODY:
                watch.headers_done()
        elif state is h11.IDLE:
            if watch.phase == _BODY:
                watch.body_done()  # the body ended and h11 already started the next cycle
        elif watch.phase in (_HEADERS, _BODY):
            watch.body_done()


def _httptools_class() -> type[asyncio.Protocol] | None:
    """The httptools-based protocol, when httptools is installed (the Lambda zip has only h11)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return None

    class GuardedHttpToolsProtocol(_Guarded, HttpToolsProtocol):
        """uvicorn's httptools protocol with the limits above, from the parser's callbacks."""

        def on_url(self, url: bytes) -> None:
            self.watch.header_line(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self.watch.header_line(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.watch.request_begins()

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self.writer = Coalescing(cast(asyncio.Transport, transport), self.loop)

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self.watch.headers_done()
            cycle = self.cycle
            if cycle is not None and cycle.transport is self.transport:
                cycle.transport = self.writer  # its response's head and body in one write
                self.writer.cycle = cycle

        def shutdown(self) -> None:
            self.writer.flush()  # a head held this step goes before the connection closes
            super().shutdown()

        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            self.writer.cycle = None  # a cycle still to answer holds the writer: no loop

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self.watch.body_done()

    return GuardedHttpToolsProtocol


def configured(settings: ServerConfig, max_connections: int, http: str) -> type[asyncio.Protocol]:
    """A protocol class bound to this server's settings and a fresh budget. `http`: "auto"
    (httptools when installed, else h11), "httptools" or "h11"."""
    base: type[asyncio.Protocol] = GuardedH11Protocol
    if http != "h11":
        httptools = _httptools_class()
        if httptools is None and http == "httptools":
            raise RuntimeError("httptools is not installed")
        base = httptools or base
    attrs = {"settings": settings, "budget": Budget(settings, max_connections)}
    return type(base.__name__, (base,), attrs)
