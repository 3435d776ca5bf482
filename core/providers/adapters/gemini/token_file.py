"""Vertex AI access tokens from a file that something else keeps fresh.

OAuth access tokens live about an hour, longer than any config is read for, and minting them
needs google-auth, which the gateway does not carry. A refresher (sidecar, cron, workload
identity agent) writes the current token to a file; this signer re-reads it when it changes,
off the event loop, and at most every few seconds.
"""

from __future__ import annotations

import asyncio
import os
import time

from core.providers.adapters.base import ProviderError, UpstreamRequest
from shared.errors import FailureClass
from shared.secret import Secret

RECHECK_S = 5.0


class TokenFileSigner:
    def __init__(self, path: str, recheck_s: float = RECHECK_S) -> None:
        self._path = path
        self._recheck_s = recheck_s
        self._token: Secret | None = None  # an OAuth bearer token: never in a repr
        self._mtime_ns = -1
        self._checked = float("-inf")
        self._lock = asyncio.Lock()

    async def sign(self, request: UpstreamRequest) -> UpstreamRequest:
        if self._token is None or time.monotonic() - self._checked >= self._recheck_s:
            await self._refresh()
        token = self._token
        if token is None:  # _refresh raises first; kept explicit for the type checker
            raise _unavailable()
        request.headers["authorization"] = f"Bearer {token.reveal()}"
        return request

    async def _refresh(self) -> None:
        async with self._lock:
            if self._token is not None and time.monotonic() - self._checked < self._recheck_s:
                return  # another request refreshed it while this one waited
            try:
                fresh = await asyncio.to_thread(self._read)
            except OSError:
                fresh = None
                if self._token is None:
                    raise _unavailable() from None
            self._checked = time.monotonic()
            if fresh:
                self._token = Secret(fresh)
            elif self._token is None:
                raise _unavailable()

    def _read(self) -> str | None:
        """The file's token if it changed since the last read, else None."""
        mtime_ns = os.stat(self._path).st_mtime_ns
        if mtime_ns == self._mtime_ns:
            return None
        with open(self._path, encoding="utf-8") as handle:
            token = handle.read().strip()
        self._mtime_ns = mtime_ns
        return token or None


def _unavailable() -> ProviderError:
    return ProviderError(
        502, "the gateway has no access token for this provider", FailureClass.AUTH
    )
