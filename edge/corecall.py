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
from collections.abc import AsyncIterator

from shared.h1 import Client, H1Error, Response


class Unsent(Exception):
    """The core's app never saw the body: another replica may take the request."""


class Sent(Exception):
    """The core may have acted on the request: it must not be sent again."""

    def __init__(self, timed_out: bool) -> None:
        super().__init__("timed out" if timed_out else "failed")
        self.timed_out = timed_out


class CoreCaller:
    """Sends one attempt with the edge's timeouts; raises Unsent or Sent on failure."""

    def __init__(self, connect_s: float, ack_s: float, response_s: float, idle_s: float) -> None:
        self.connect_s = connect_s
        self.ack_s = ack_s
        self.response_s = response_s
        self.idle_s = idle_s  # the longest silence once the core answered (between chunks)

    async def send(
        self,
        client: Client,
        method: str,
        url: str,
        body: bytes | AsyncIterator[bytes] | None,
        headers: dict[str, str],
        fresh: bool = False,
    ) -> Response:
        """The core's response head. `fresh`: on a new connection (a later attempt, whose
        pooled connection may have been the one the core was closing)."""
        loop = asyncio.get_running_loop()
        acknowledged = False
        try:
            async with asyncio.timeout(self.ack_s) as deadline:

                def on_continue() -> None:
                    nonlocal acknowledged
                    acknowledged = True
                    self._extend(deadline, loop)

                return await client.request(
                    method,
                    url,
                    headers,
                    body or None,  # a GET carries no body (and no Content-Length)
                    expect_continue=True,  # any body waits for the core's `100 Continue`
                    on_continue=on_continue,
                    connect_timeout=self.connect_s,
                    read_timeout=self.idle_s,
                    fresh=fresh,
                )
        except (H1Error, TimeoutError) as exc:
            if not acknowledged:
                raise Unsent from exc
            raise Sent(isinstance(exc, TimeoutError)) from exc

    def _extend(self, deadline: asyncio.Timeout, loop: asyncio.AbstractEventLoop) -> None:
        """Acknowledged: the core is alive and has the request; now wait for its answer. (The
        deadline may be expiring in this very loop turn: then it stands.)"""
        if not deadline.expired():
            with contextlib.suppress(RuntimeError):  # the attempt already left its deadline
                deadline.reschedule(loop.time() + self.response_s)
