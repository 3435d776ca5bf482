"""The server protocol's writer: a response's head and its first body bytes in one write, and
no `100 Continue` for a request whose body came whole and is answered at once."""

from __future__ import annotations

import asyncio
from typing import Any

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# How long a request whose body came whole with its head runs before its `Expect: 100-continue`
# is answered (RFC 9110 10.1.1: a server that has the content may omit the 100). The edge sends
# its JSON bodies to cores with shared hop nonces that way (edge/corecall.py: eager bodies) and
# waits `edge.core_ack_timeout` for any answer: at least 5x this (shared/config_edge.py).
CONTINUE_DEFER_S = 0.02


class Coalescing:
    """A request cycle's view of its connection: a response's head leaves with the first body
    bytes, in one write. uvicorn writes the head and the body separately: two send() calls,
    and for the peer (the edge's pooled client, for one) two reads and two wake-ups, per
    response. The head (the first write once the cycle's response has started) is held only
    until the body comes in the same step of the loop (as Starlette's Response sends both), or
    until the end of that step (a stream's first chunk may take a while): never longer, and
    never out of order. Only what uvicorn's cycle calls (write, close, is_closing) is here.

    An interim `100 Continue` (uvicorn writes it when the app first reads the body) goes at once
    while the body is still to come: the client waits for it before sending. When the whole
    body is already in, it goes only if the response has not started CONTINUE_DEFER_S later:
    a request answered within that costs neither tier a write, a read and a wake-up (measured:
    ~0.1 ms of CPU per request between the edge and the core, of ~1.2)."""

    __slots__ = ("_held", "_late", "_loop", "_transport", "cycle")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._late: asyncio.TimerHandle | None = None  # a deferred `100 Continue`
        self.cycle: Any = None  # a cycle whose response's head is still to come

    def write(self, data: bytes) -> None:
        held = self._held
        cycle = self.cycle
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif cycle is None:
            self._transport.write(data)
        elif cycle.response_started:
            self.cycle = None
            self._held = data
            self._loop.call_soon(self.flush)
            if self._late is not None:
                self._late.cancel()
                self._late = None
        elif data == CONTINUE and not cycle.more_body:
            self._late = self._loop.call_later(CONTINUE_DEFER_S, self._continue, cycle)
        else:
            self._transport.write(data)

    def _continue(self, cycle: Any) -> None:
        """The deferred `100 Continue`, unless the response began (or the connection moved on
        to another request) in the meantime."""
        self._late = None
        if self.cycle is cycle and not self._transport.is_closing():  # no head written yet
            self._transport.write(CONTINUE)

    def flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        if self._late is not None:
            self._late.cancel()
            self._late = None
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()
