"""A streamed response that stops when its client leaves, without a task group per stream.

Under ASGI spec 2.3 (which uvicorn declares: its `send` returns quietly once the client is
gone), Starlette's StreamingResponse runs the body beside a disconnect listener in an anyio task
group: a group, a cancel scope and a task for every stream, whether it lasts a millisecond or an
hour (measured: about 0.4 ms of time to first token per tier on a 2-vCPU VM). This runs the body
in the request's own task under shared.client_watch's watch instead: a stream that ends within
WATCH_AFTER_S costs a dict entry; a longer one gets one listener task, and a client that leaves
cancels the body where it stands (its iterator sees the cancellation, as under Starlette), at
most WATCH_AFTER_S after the stream began. Under spec 2.4 (a `send` that raises once the client
is gone) Starlette's own path is already lean and runs as it is.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from shared.client_watch import watched

_NO_ASGI: dict[str, Any] = {}


class Streamed(StreamingResponse):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _sends_raise(scope):
            await super().__call__(scope, receive, send)
            return
        try:
            await watched(receive, self.stream_response(send), _gone)
        except OSError:
            raise ClientDisconnect() from None
        if self.background is not None:
            await self.background()


def _gone() -> None:
    """The client left: the body was cancelled where it stood, and the response ends here."""


def _sends_raise(scope: Scope) -> bool:
    """ASGI 2.4 and later: `send` raises once the client is gone (no listener needed)."""
    version = scope.get("asgi", _NO_ASGI).get("spec_version", "2.0")
    if version in ("2.3", "2.0", "2.1", "2.2"):
        return False
    major, _, minor = version.partition(".")
    return (int(major), int(minor or 0)) >= (2, 4)
