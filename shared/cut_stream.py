"""A streamed response that can end cut short, on purpose and quietly.

Audio and other binary bodies have no in-band error: once their headers and first bytes are
out, a failure behind them can only end the client's response without its end (a chunked body
without its last chunk, or fewer bytes than Content-Length), which every HTTP client reports as
an error, never as a whole answer. A body iterator says so by raising `CutShort`; the response
then returns without completing, and the server closes the connection (uvicorn logs one line,
"ASGI callable returned without completing response", rather than a traceback that would read
as a bug).
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from shared.streamed import Streamed


class CutShort(Exception):
    """Raised by a body iterator: end the response here, incomplete."""


class CuttableStream(Streamed):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except CutShort:
            return
