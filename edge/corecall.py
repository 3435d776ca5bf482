"""One attempt to hand a request to a core replica, and whether it may go to another one.

The question that decides a retry is "could the core have acted on it?" (called the upstream,
been billed). Every request with a body is sent with `Expect: 100-continue`: the edge sends its
headers, the core's server answers `100 Continue` when the app starts reading the body (the
first thing a core does, before any state is touched: the hop credential binds the body's
digest, so nothing can be authorised without it), and only then does the body go out. So:

- until that acknowledgement (or any response) arrives, the core cannot have acted on the
  request: refused, reset, a connect timeout, a pooled connection the core was closing, or a
  replica that is alive in the kernel but not running (SIGSTOP, a wedged event loop) are all
  `Unsent`, and the request may go to another replica. The wait is `core_ack_timeout`: short,
  because it does not include any upstream time.
- after it, the core may be running the request; a failure is `Sent` and never retried. Then
  only `core_response_timeout` bounds the wait for the response headers, which the core sends
  after the whole answer (non-streaming) or the first upstream chunk (streams), so it must stay
  above the core's own `total_deadline`.

An upload (edge/upload.py) is the body sent as chained frames, read from the client while it
is sent: the core claims the credential's nonce, then answers `100 Continue` as it starts
reading, and only then does the first frame (and so the first byte read past the edge's peek)
go out. So an upload, too, may go to another replica until that acknowledgement, and never
after: its body cannot be read from the client twice.

A request without a body (GET /v1/models) has no acknowledgement; it reads config only and is
safe to repeat, so its whole response must arrive within `core_ack_timeout` and any failure is
`Unsent`. Each attempt carries its own freshly signed hop credential (a new nonce), so a slow
replica that claims the first nonce late can never make the second attempt look replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

# The acknowledgement future of the attempt running in this task (read by _AckedRequest).
_ACK: contextvars.ContextVar[asyncio.Future[None] | None] = contextvars.ContextVar(
    "interlock_core_ack", default=None
)


class Unsent(Exception):
    """The core's app never saw the body: another replica may take the request."""


class Sent(Exception):
    """The core may have acted on the request: it must not be sent again."""

    def __init__(self, timed_out: bool) -> None:
        super().__init__("timed out" if timed_out else "failed")
        self.timed_out = timed_out


class _AckedRequest(aiohttp.ClientRequest):
    """Reports the core's `100 Continue` to the attempt that sent the request."""

    def update_expect_continue(self, expect: bool = False) -> None:
        super().update_expect_continue(expect)
        ack = _ACK.get()
        continued = self._continue
        if ack is not None and continued is not None:
            continued.add_done_callback(lambda future: _acknowledged(future, ack))


def _acknowledged(continued: asyncio.Future[bool], ack: asyncio.Future[None]) -> None:
    # aiohttp resolves its waiter with True on `100 Continue`; a cancelled or failed waiter
    # (the connection was lost first) is no acknowledgement.
    if not continued.cancelled() and continued.exception() is None and not ack.done():
        ack.set_result(None)


def core_session(connector: aiohttp.BaseConnector) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=connector,
        request_class=_AckedRequest,
        auto_decompress=False,
        trust_env=False,
        skip_auto_headers=("User-Agent",),
    )


class CoreCaller:
    """Sends one attempt with the edge's timeouts; raises Unsent or Sent on failure."""

    def __init__(self, connect_s: float, ack_s: float, response_s: float, idle_s: float) -> None:
        self.ack_s = ack_s
        self.response_s = response_s
        # sock_read: the longest silence once the core answered (between stream chunks).
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_s, sock_read=idle_s)

    async def send(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        body: bytes | AsyncIterator[bytes] | None,
        headers: dict[str, str],
    ) -> aiohttp.ClientResponse:
        loop = asyncio.get_running_loop()
        ack: asyncio.Future[None] | None = loop.create_future() if body else None
        _ACK.set(ack)
        try:
            async with asyncio.timeout(self.ack_s) as deadline:
                if ack is not None:
                    ack.add_done_callback(lambda _: self._extend(deadline, loop))
                return await self._request(session, method, url, body, headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            if ack is None or not ack.done():
                raise Unsent from exc
            raise Sent(isinstance(exc, TimeoutError)) from exc
        finally:
            _ACK.set(None)

    def _extend(self, deadline: asyncio.Timeout, loop: asyncio.AbstractEventLoop) -> None:
        """Acknowledged: the core is alive and has the request; now wait for its answer. (The
        callback runs a loop turn later: the attempt may have ended, or timed out, meanwhile.)"""
        if not deadline.expired():
            with contextlib.suppress(RuntimeError):  # the attempt already left its deadline
                deadline.reschedule(loop.time() + self.response_s)

    async def _request(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        body: bytes | AsyncIterator[bytes] | None,
        headers: dict[str, str],
    ) -> aiohttp.ClientResponse:
        options: dict[str, Any] = {"timeout": self.timeout}
        if body:
            options["data"] = body
            options["expect100"] = True
        return await session.request(method, url, headers=headers, **options)
