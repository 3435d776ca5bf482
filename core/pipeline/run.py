"""The runner: an API's requests through the stages, and account closing each exactly once.

    read -> validate -> resolve -> plan -> admit -> dispatch -> encode -> account

A stage that answers (sets `x.response`: encode, or a stage before it that can answer alone,
such as a cache) ends the list; one that raises ends the request. Before admission nothing is
held, so an error simply leaves in the API's envelope (core.app) and an answer needs no
accounting. After it, account closes the request: a ProviderError (no target served) is logged
as a failure, a cancellation as `cancelled`, anything else (an image that could not be fetched)
settles the reservation to zero. A complete answer is accounted once encoded; a stream when it
ends, however it ends (`Exchange.finish`).

A client that leaves cancels the work done for it, whatever the API and wherever the request is:
while the stages run, a watcher on the ASGI receive channel (shared/client_watch.py, the edge's
too) cancels the task running them, which cancels the
attempt in flight (its upstream connection is closed), a backoff sleep or a key wait, and no
further target is tried. Once a stream's response is returned, the server's own disconnect
handling cancels the relay, which closes the upstream stream (core.api.relay). The one
exception: a request leading a coalesced flight that others wait on goes on for them, and is
cancelled when the last of them leaves (`Exchange.kept`, core.cache.follow.detach).

Traces (core.observe.tracing) join here, once for every API: the request's trace is made in
`__call__` (None when tracing is off or the request is not sampled), each stage runs through
it in `_run` (one `if` per stage when untraced), and it ends with the response, or, for a
stream, when the stream ends (`Exchange.finish`). Every response, errors included, carries
Server-Timing: `core` (this process's time until the response was handed to the server: for a
stream, until its headers, the body being still to come) and `upstream` (the dispatcher's, from
the first attempt until the answer, or a stream's first chunk, was in hand).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Generic

from starlette.requests import Request
from starlette.responses import Response

from core.api.identity import Caller
from core.observe.tracing import ACTIVE, NO_TRACER, OUTBOUND, Tracer
from core.pipeline.account import Account
from core.pipeline.api import ApiSpec, Q, R, S
from core.pipeline.exchange import AccountedStream, Exchange
from core.pipeline.stages import Stage
from core.providers.adapters.base import ProviderError
from shared.client_watch import watched
from shared.errors import Api, GatewayError

# The status of an answer nobody will read (the client has gone), as nginx logs it.
CLIENT_CLOSED = 499


class Pipeline(Generic[Q, S, R]):
    """One API's endpoint: its spec run through the shared stages (core.app's Handler)."""

    __slots__ = ("_account", "_spec", "_stages", "_tracer")

    # The hop nonce's claim may still be under way when the stages start: Dispatch settles it
    # before anything goes upstream, core.app's endpoint before any answer leaves
    # (core.api.nonce_claim).
    defers_claim = True

    def __init__(
        self,
        spec: ApiSpec[Q, S, R],
        stages: Sequence[Stage],
        account: Account | None = None,
        tracer: Tracer = NO_TRACER,
    ) -> None:
        self._spec = spec
        self._stages = tuple(stages)
        self._account = account or Account()
        self._tracer = tracer

    @property
    def api(self) -> Api:
        """The error envelope the API's clients read."""
        return self._spec.api

    @property
    def stage_names(self) -> tuple[str, ...]:
        return (*(stage.name for stage in self._stages), self._account.name)

    async def __call__(self, http: Request, caller: Caller, body: bytes) -> Response:
        x: Exchange[Q, S, R] = Exchange(self._spec, self._account, http, caller, body)
        trace = x.trace = self._tracer.request(x)
        if trace is None:
            OUTBOUND.set(caller.traceparent)  # propagated unchanged (core.observe.tracing)
        else:
            ACTIVE.set(trace)
        try:
            response = await watched(http.receive, self._run(x), _client_closed, x.kept)
        except GatewayError as error:  # after resolve, errors say which rule routed too
            error.headers.update(x.route_headers())
            error.headers["server-timing"] = server_timing(x)
            if trace is not None:
                trace.failed(x, error, error.status)
            raise
        except BaseException as error:
            if trace is not None:
                trace.failed(x, error, None)
            raise
        response.headers["server-timing"] = server_timing(x)
        if trace is not None:
            streaming = isinstance(response, AccountedStream)
            trace.responded(x, response.status_code, response.headers, streaming)
        return response

    async def _run(self, x: Exchange[Q, S, R]) -> Response:
        trace = x.trace
        try:
            for stage in self._stages:
                if trace is None:
                    await stage(x)
                else:
                    await trace.stage(stage, x)
                if x.response is not None:  # answered (by encode, or a stage that can answer)
                    break
            # Handed over, not kept: a stream's response holds its exchange (AccountedStream),
            # and the pair would be a cycle only a full collection frees (~18 KB a stream).
            response, x.response = x.response, None
            if response is None:
                raise RuntimeError(f"{self.stage_names} left the request without a response")
        except ProviderError as error:
            if x.admission is None:
                raise
            self._account.failed(x, error)
            relayed = self._spec.relayed(x, error)
            if relayed is None:
                raise
            relayed.headers.update(x.route_headers())
            return relayed
        except asyncio.CancelledError:
            if x.admission is not None:
                self._account.cancelled(x)
            raise
        except BaseException:
            if x.admission is not None:
                self._account.released(x)
            raise
        if x.admission is not None and not x.request.stream:
            self._account.served(x, x.usage, "ok")
        return response


def server_timing(x: Exchange[Q, S, R]) -> str:
    """`core;dur=<ms>` since the request reached the pipeline, and `upstream;dur=<ms>` when a
    target answered (the edge adds its own `edge` metric in front)."""
    core = f"core;dur={(time.perf_counter() - x.started) * 1000:.1f}"
    outcome = getattr(x, "outcome", None)
    if outcome is None:
        return core
    return f"{core}, upstream;dur={outcome.upstream_s * 1000:.1f}"


def _client_closed() -> Response:
    return Response(status_code=CLIENT_CLOSED)  # nobody is listening any more
