"""The server protocol's writer: what a response writes in one step of the loop leaves in one
write (its head with its first body bytes at once), and no `100 Continue` for a request whose
body came whole and is answered at once."""

from __future__ import annotations

import asyncio
from typing import Any

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# How long a request whose body came whole with its head runs before its `Expect: 100-continue`
# is answered (RFC 9110 10.1.1: a server that has the content may omit the 100). The edge sends
# its JSON bodies to cores with shared hop nonces that way (edge/corecall.py: eager bodies) and
# waits `edge.core_ack_timeout` for any answer: at least 5x this (shared/config_edge.py). Long
# enough for fast answers under load too (a busy core's queueing: ~35 ms at 50 concurrent
# requests on one vCPU, when a 20 ms deferral still acknowledged half of them).
CONTINUE_DEFER_S = 0.1


class Coalescing:
    """A request cycle's view of its connection. uvicorn writes a response's head, and each
    body message, with a send() of its own: for the peer (the edge's pooled client, for one)
    as many reads and wake-ups. A stream relayed from one upstream read (twenty events, say)
    was twenty-odd writes in the core and as many reads in the edge. Here what a response
    writes is held to the end of the loop's step and leaves in one write, except its first
    body bytes: those go at once, with the head (a stream's first token, a whole JSON answer)
    when it is still held. Nothing is held past the step, nothing is reordered, and a close
    writes what is held first. Only what uvicorn's cycle calls (write, close, is_closing) is
    here.

    An interim `100 Continue` (uvicorn writes it when the app first reads the body) goes at once
    while the body is still to come: the client waits for it before sending. When the whole
    body is already in, it goes only if the response has not started CONTINUE_DEFER_S later:
    a request answered within that costs neither tier a write, a read and a wake-up (measured:
    ~0.1 ms of CPU per request between the edge and the core, of ~1.2)."""

    __slots__ = ("_first", "_held", "_late", "_loop", "_transport", "cycle")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None  # written this step, to leave at its end
        self._first = False  # the next write is a response's first body bytes
        self._late: asyncio.TimerHandle | None = None  # a deferred `100 Continue`
        self.cycle: Any = None  # a cycle whose response's head is still to come

    def write(self, data: bytes) -> None:
        cycle = self.cycle
        if cycle is None:  # body bytes
            if self._first:
                self._first = False
                self._now(data)
            else:
                self._hold(data)
        elif cycle.response_started:  # the head
            self.cycle = None
            self._first = True
            self._hold(data)
            if self._late is not None:
                self._late.cancel()
                self._late = None
        elif data == CONTINUE and not cycle.more_body:
            self._late = self._loop.call_later(CONTINUE_DEFER_S, self._continue, cycle)
        else:  # an interim response: at once
            self._now(data)

    def _hold(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._held = [data]
            self._loop.call_soon(self.flush)
        else:
            held.append(data)

    def _continue(self, cycle: Any) -> None:
        """The deferred `100 Continue`, unless the response began (or the connection moved on
        to another request) in the meantime."""
        self._late = None
        if self.cycle is cycle:  # no head written yet
            self._now(CONTINUE)

    def _now(self, data: bytes) -> None:
        """`data` written at once, behind whatever is held (no end-of-step write to ask for)."""
        held, self._held = self._held, None
        if held is not None:
            held.append(data)
            data = b"".join(held)
        if not self._transport.is_closing():
            self._transport.write(data)

    def flush(self) -> None:
        """Writes what is held (at the end of the step, or sooner when asked)."""
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self.flush()
        if self._late is not None:
            self._late.cancel()
            self._late = None
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()
