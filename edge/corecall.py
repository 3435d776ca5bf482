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

Eager bodies. Waiting for `100 Continue` costs every request a round trip between the tiers.
When every replica a request may go to claims hop nonces in shared state (Redis: each core says
so on its answers, `x-interlock-nonces: shared`, and says `local` while it falls back to its
own memory), the nonce itself makes a second replica safe: a JSON body then goes out with its
head, `Expect` still asks for the acknowledgement (the timeouts above are unchanged; the
core's server, having the whole body, sends its `100 Continue` only if it has not answered
100 ms later, so a fast answer costs neither tier the interim response: shared/server_write.py),
and every attempt carries the SAME credential. A replica the edge gave up on that reads the
request later can act on it only by claiming its nonce first, which the replica that took the
retry has done (it answers 401 unheard); and if the slow one claimed first, the retry's
replica refuses it as replayed (`x-interlock-hop-refused: replayed`), which the edge reports
as the core's timeout, never as a 401. Uploads are never eager: their body cannot be read
twice. Until a replica has said `shared`, and for one that says `local` (no Redis, or Redis
down in fail-open mode), bodies wait for the acknowledgement as above.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence

from shared import hop
from shared.h1 import Client, H1Error, Response


class Unsent(Exception):
    """The core's app never saw the body: another replica may take the request."""


class Sent(Exception):
    """The core may have acted on the request: it must not be sent again. `elsewhere`: the
    replica just called is fine, an earlier attempt's replica took the request."""

    def __init__(self, timed_out: bool, elsewhere: bool = False) -> None:
        super().__init__("timed out" if timed_out else "failed")
        self.timed_out = timed_out
        self.elsewhere = elsewhere


class CoreCaller:
    """Sends one attempt with the edge's timeouts; raises Unsent or Sent on failure."""

    def __init__(
        self,
        connect_s: float,
        ack_s: float,
        response_s: float,
        idle_s: float,
        urls: Iterable[str] = (),
        max_skew_s: float = 60.0,
    ) -> None:
        self.connect_s = connect_s
        self.ack_s = ack_s
        self.response_s = response_s
        self.idle_s = idle_s  # the longest silence once the core answered (between chunks)
        # Per configured core URL (so bounded): whether it last said its nonces are shared.
        self._shared = dict.fromkeys(urls, False)
        self._max_skew_s = max_skew_s

    def eager(self, urls: Sequence[str]) -> bool:
        """Whether a JSON body may go out with its head to any of `urls` (see above): also,
        its one credential must still be fresh (hop.max_skew) when the last attempt starts,
        or that attempt would be refused as stale instead of served."""
        if max(2, len(urls)) * (self.connect_s + self.ack_s) >= self._max_skew_s:
            return False
        shared = self._shared
        return all(shared.get(url, False) for url in urls)

    async def send(
        self,
        client: Client,
        method: str,
        base: str,
        target: str,
        body: bytes | AsyncIterator[bytes] | None,
        headers: dict[str, str],
        fresh: bool = False,
        eager: bool = False,
    ) -> Response:
        """The core's response head. `fresh`: on a new connection (a later attempt, whose
        pooled connection may have been the one the core was closing); `eager`: the body goes
        with the head, and the credential is the one earlier attempts carried (see above)."""
        loop = asyncio.get_running_loop()
        acknowledged = False
        try:
            async with asyncio.timeout(self.ack_s) as deadline:

                def on_continue() -> None:
                    nonlocal acknowledged
                    acknowledged = True
                    self._extend(deadline, loop)

                response = await client.request(
                    method,
                    base + target,
                    headers,
                    body or None,  # a GET carries no body (and no Content-Length)
                    expect_continue=True,  # acknowledged by the core's `100 Continue`
                    eager=eager,  # else the body waits for it
                    on_continue=on_continue,
                    connect_timeout=self.connect_s,
                    read_timeout=self.idle_s,
                    fresh=fresh,
                )
        except (H1Error, TimeoutError) as exc:
            if not acknowledged:
                raise Unsent from exc
            raise Sent(isinstance(exc, TimeoutError)) from exc
        return self._heard(base, response, eager and fresh)

    def _heard(self, base: str, response: Response, retried: bool) -> Response:
        """What the core said of its nonces, learned (and dropped: it is not the client's)."""
        said = response.headers.pop(hop.NONCES_HEADER, None)
        if said is not None and base in self._shared:
            self._shared[base] = said == hop.NONCES_SHARED
        refused = response.headers.pop(hop.REFUSED_HEADER, None)
        if retried and response.status == 401 and refused == hop.REFUSED_REPLAYED:
            response.close()
            raise Sent(timed_out=True, elsewhere=True)  # an earlier attempt's replica took it
        return response

    def _extend(self, deadline: asyncio.Timeout, loop: asyncio.AbstractEventLoop) -> None:
        """Acknowledged: the core is alive and has the request; now wait for its answer. (The
        deadline may be expiring in this very loop turn: then it stands.)"""
        if not deadline.expired():
            with contextlib.suppress(RuntimeError):  # the attempt already left its deadline
                deadline.reschedule(loop.time() + self.response_s)
