"""Sends a translator's requests through its target's provider's transport (core.providers).

The I/O half of embeddings is a mode of the one transport: signing, the provider's timeouts,
transport-error mapping and the scrubbing of upstream errors are the same as chat's, and only
the error parser is the translator's. Several requests for one client call run concurrently, at
most `translator.parallel` at a time; the first failure cancels the rest, since the client call
has failed either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from core.providers.adapters.base import Target, UpstreamRequest
from core.providers.adapters.embeddings import Reply, Translator
from core.providers.parsing import guarded_error_parser


async def send(
    translator: Translator, requests: list[UpstreamRequest], target: Target
) -> list[Reply]:
    """The replies to `requests`, in order, sent by the provider's own transport (chat's)."""
    transport = target.provider.transport
    parse_error = guarded_error_parser(translator.parse_error, target)

    async def one(request: UpstreamRequest) -> Reply:
        return await transport.fetch(request, target, parse_error)

    return await bounded(one, requests, translator.parallel)


async def bounded(
    call: Callable[[UpstreamRequest], Awaitable[Reply]], items: list[UpstreamRequest], limit: int
) -> list[Reply]:
    """Results in input order, with at most `limit` calls in flight."""
    if len(items) == 1:
        return [await call(items[0])]
    results: list[Reply | None] = [None] * len(items)
    pending = iter(enumerate(items))

    async def worker() -> None:
        for index, item in pending:  # one shared iterator: each item is taken once
            results[index] = await call(item)

    workers = [asyncio.ensure_future(worker()) for _ in range(min(limit, len(items)))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    return [result for result in results if result is not None]
