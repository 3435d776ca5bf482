"""Sends a translator's requests over the core's shared aiohttp session.

The I/O half of embeddings: sign (the adapters' signers, built once at start-up), send with the
provider's timeout, map transport failures exactly as chat does (core.upstream.transport_error)
and HTTP errors with the translator's parser. Several requests for one client call run
concurrently, at most `translator.parallel` at a time; the first failure cancels the rest,
since the client call has failed either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import aiohttp
from yarl import URL

from core.adapters.base import RequestSigner, Target, UpstreamRequest
from core.embeddings.translate import Reply, Translator
from core.upstream import transport_error

DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=600)


class Sender:
    def __init__(
        self,
        session: Callable[[], aiohttp.ClientSession],
        timeouts: Mapping[str, aiohttp.ClientTimeout],
        signers: Mapping[str, RequestSigner | None],
    ) -> None:
        self._session = session
        self._timeouts = timeouts
        self._signers = signers

    async def send(
        self, translator: Translator, requests: list[UpstreamRequest], target: Target
    ) -> list[Reply]:
        name = target.provider.name
        signer = self._signers.get(name)
        timeout = self._timeouts.get(name, DEFAULT_TIMEOUT)

        async def one(request: UpstreamRequest) -> Reply:
            if signer is not None:
                request = await signer.sign(request)
            # A signed URL must go out byte for byte as signed: stop yarl re-normalising it.
            url = URL(request.url, encoded=True) if signer is not None else request.url
            try:
                async with self._session().request(
                    request.method, url, data=request.body, headers=request.headers, timeout=timeout
                ) as response:
                    body = await response.read()
                    status = response.status
                    headers = {k.lower(): v for k, v in response.headers.items()}
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise transport_error(exc) from None
            if status >= 400:
                raise translator.parse_error(status, headers, body)
            return headers, body

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
