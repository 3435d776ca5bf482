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
handling cancels the relay, which closes the upstream stream (core.api.relay).

Spans go around `await stage(x)` in `_run`: one place covers every stage of every API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Generic

from starlette.requests import Request
from starlette.responses import Response

from core.api.identity import Caller
from core.pipeline.api import ApiSpec, Q, R, S
from core.pipeline.exchange import Exchange
from core.pipeline.stages import Account, Stage
from core.providers.adapters.base import ProviderError
from shared.client_watch import watched
from shared.errors import Api, GatewayError

# The status of an answer nobody will read (the client has gone), as nginx logs it.
CLIENT_CLOSED = 499


class Pipeline(Generic[Q, S, R]):
    """One API's endpoint: its spec run through the shared stages (core.app's Handler)."""

    __slots__ = ("_account", "_spec", "_stages")

    def __init__(
        self, spec: ApiSpec[Q, S, R], stages: Sequence[Stage], account: Account | None = None
    ) -> None:
        self._spec = spec
        self._stages = tuple(stages)
        self._account = account or Account()

    @property
    def api(self) -> Api:
        """The error envelope the API's clients read."""
        return self._spec.api

    @property
    def stage_names(self) -> tuple[str, ...]:
        return (*(stage.name for stage in self._stages), self._account.name)

    async def __call__(self, http: Request, caller: Caller, body: bytes) -> Response:
        x: Exchange[Q, S, R] = Exchange(self._spec, self._account, http, caller, body)
        try:
            return await watched(http.receive, self._run(x), _client_closed)
        except GatewayError as error:  # after resolve, errors say which rule routed too
            error.headers.update(x.route_headers())
            raise

    async def _run(self, x: Exchange[Q, S, R]) -> Response:
        try:
            for stage in self._stages:
                await stage(x)
                if x.response is not None:  # answered (by encode, or a stage that can answer)
                    break
            response = x.response
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


def _client_closed() -> Response:
    return Response(status_code=CLIENT_CLOSED)  # nobody is listening any more
