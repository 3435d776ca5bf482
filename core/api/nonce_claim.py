"""A hop nonce's claim, under way while the request is read and routed.

The claim (one SET NX in the state store) is what stops a captured credential from being used
twice; it must be settled before the request acts, not before it is parsed. Awaited at once,
it costs every request one more Redis round trip in series, with nothing else to do meanwhile.
Started as a task when the credential and the body have checked out (`start`: the request
yields once, so the claim's first step runs then and its command is written at once, not when
the request next waits: with rate-limit leases that was only at the claim's own settling, a
round trip in series again), its answer has come by the time the request would act.

Where it is settled (`settled()`): before the Dispatch stage calls anything upstream (image
fetches and provider caches included), before an Idempotency-Key is looked up, and in the
endpoint before any answer or error leaves (a cache hit, a 4xx); a replayed credential then
gets its 401 (`x-interlock-hop-refused: replayed`) instead, and what its admission took is
given back as for any failed request. Only routes served by the pipeline defer their claim
(`Pipeline.defers_claim`); every other route settles it before its handler runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


def _retrieved(task: asyncio.Task[None]) -> None:
    """Marks the outcome seen, so a claim nobody settled (a client gone) is not reported as
    a task exception never retrieved; `settled` re-raises it for those who ask."""
    if not task.cancelled():
        task.exception()


class NonceClaim:
    __slots__ = ("_task",)

    def __init__(self, work: Coroutine[Any, Any, None]) -> None:
        self._task = asyncio.ensure_future(work)
        self._task.add_done_callback(_retrieved)

    @classmethod
    async def start(cls, work: Coroutine[Any, Any, None], remote: bool = True) -> NonceClaim:
        """The claim, its command on the wire: the caller yields once, and the claim's task,
        scheduled first, issues it (the store writes a claim at once: core.state.resp).
        `remote=False` (a store in this process's memory): nothing to send, no yield."""
        claim = cls(work)
        if remote:
            await asyncio.sleep(0)
        return claim

    async def settled(self) -> None:
        """Returns once the nonce is this request's; raises the claim's GatewayError (401
        replayed; 503 when shared state is down and fails closed). The claim runs to its end
        even if the request is cancelled meanwhile: a credential once presented stays spent."""
        task = self._task
        if not task.done():
            await asyncio.shield(task)
        task.result()
