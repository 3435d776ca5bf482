"""The server protocol's writer: a response's head and its first body bytes in one write."""

from __future__ import annotations

import asyncio
from typing import Any


class Coalescing:
    """A request cycle's view of its connection: a response's head leaves with the first body
    bytes, in one write. uvicorn writes the head and the body separately: two send() calls,
    and for the peer (the edge's pooled client, for one) two reads and two wake-ups, per
    response. The head (the first write once the cycle's response has started: an interim
    `100 Continue` before it goes at once) is held only until the body comes in the same step
    of the loop (as Starlette's Response sends both), or until the end of that step (a
    stream's first chunk may take a while): never longer, and never out of order. Only what
    uvicorn's cycle calls (write, close, is_closing) is here."""

    __slots__ = ("_held", "_loop", "_transport", "cycle")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self.cycle: Any = None  # a cycle whose response's head is still to come

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif self.cycle is not None and self.cycle.response_started:
            self.cycle = None
            self._held = data
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()
