"""SigV4 for Bedrock: credentials resolved off the event loop, signing inline.

botocore's credential chain may block (files, SSO caches, IMDS, STS), so it only ever runs in a
worker thread. The frozen credentials are kept and re-resolved in the background before they
could expire: botocore refreshes temporary credentials once they are within 15 minutes of
expiry and never hands out ones within 10, so re-freezing every few minutes is always in time.
Signing itself is HMAC over the exact bytes that will be sent, and cheap enough to run inline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

from core.providers.adapters.base import ProviderError, UpstreamRequest
from core.providers.adapters.bedrock.options import BedrockOptions
from shared.errors import FailureClass
from shared.secret import Secret

log = logging.getLogger("interlock.core")

SERVICE = "bedrock"
# Age after which frozen credentials are re-resolved in the background / before use.
SOFT_REFRESH_S = 240.0
HARD_REFRESH_S = 480.0

Resolver = Callable[[], ReadOnlyCredentials | None]


def no_credentials() -> ProviderError:
    return ProviderError(
        502,
        "the gateway could not obtain credentials for the upstream provider",
        FailureClass.AUTH,
        code="upstream_auth_failed",
    )


def default_chain(profile: str | None) -> Resolver:
    """A resolver over botocore's default chain; the session is built on first (threaded) use
    and kept, so botocore's refreshable credentials keep refreshing themselves."""
    holder: dict[str, Any] = {}

    def resolve() -> ReadOnlyCredentials | None:
        if "credentials" not in holder:
            import botocore.session  # heavy; only providers that use the chain pay for it

            holder["credentials"] = botocore.session.Session(profile=profile).get_credentials()
        credentials = holder["credentials"]
        if credentials is None:
            return None
        frozen: ReadOnlyCredentials = credentials.get_frozen_credentials()
        return frozen

    return resolve


class CredentialCache:
    __slots__ = ("_clock", "_frozen", "_frozen_at", "_lock", "_refreshing", "_resolve")

    def __init__(self, resolve: Resolver, clock: Callable[[], float] = time.monotonic) -> None:
        self._resolve = resolve
        self._clock = clock
        self._frozen: ReadOnlyCredentials | None = None
        self._frozen_at = 0.0
        self._lock = asyncio.Lock()
        self._refreshing: asyncio.Task[None] | None = None

    async def get(self) -> ReadOnlyCredentials:
        frozen = self._frozen
        if frozen is not None:
            age = self._clock() - self._frozen_at
            if age < SOFT_REFRESH_S:
                return frozen
            if age < HARD_REFRESH_S:
                if self._refreshing is None or self._refreshing.done():
                    self._refreshing = asyncio.create_task(self._background())
                return frozen
        async with self._lock:
            if self._frozen is None or self._clock() - self._frozen_at >= HARD_REFRESH_S:
                await self._refresh()
            assert self._frozen is not None
            return self._frozen

    async def _refresh(self) -> None:
        try:
            frozen = await asyncio.to_thread(self._resolve)
        except Exception as exc:  # botocore raises many types; the class name is safe to log
            log.warning("AWS credential resolution failed: %s", type(exc).__name__)
            raise no_credentials() from None
        if frozen is None or not frozen.access_key or not frozen.secret_key:
            log.warning("AWS credential resolution found no credentials")
            raise no_credentials()
        self._frozen = frozen
        self._frozen_at = self._clock()

    async def _background(self) -> None:
        async with self._lock:
            if self._clock() - self._frozen_at < SOFT_REFRESH_S:
                return  # someone else refreshed while we waited
            # On failure the current credentials stay usable until the hard limit.
            with contextlib.suppress(ProviderError):
                await self._refresh()


class StaticCredentials:
    """Keys from the config: nothing to resolve, nothing that can block. A key given as a
    reference (aws-sm://...) is read at start-up and may rotate: the credentials are frozen
    again whenever one of the values has changed (one version compare per request)."""

    __slots__ = ("_frozen", "_keys", "_versions")

    def __init__(
        self, access_key: str | Secret, secret_key: str | Secret, token: str | Secret | None
    ) -> None:
        self._keys = tuple(
            k if isinstance(k, Secret) or k is None else Secret(k)
            for k in (access_key, secret_key, token)
        )
        self._versions: tuple[int, ...] = ()
        self._frozen: ReadOnlyCredentials | None = None

    async def get(self) -> ReadOnlyCredentials:
        versions = tuple(k.version if k is not None else 0 for k in self._keys)
        if self._frozen is None or versions != self._versions:
            access, secret, token = (k.reveal() if k is not None else None for k in self._keys)
            self._frozen = Credentials(access, secret, token).get_frozen_credentials()
            self._versions = versions
        return self._frozen


class SigV4Signer:
    __slots__ = ("_credentials", "_region")

    def __init__(self, region: str, credentials: CredentialCache | StaticCredentials) -> None:
        self._region = region
        self._credentials = credentials

    async def sign(self, request: UpstreamRequest) -> UpstreamRequest:
        credentials = await self._credentials.get()
        aws = AWSRequest(
            method=request.method, url=request.url, headers=request.headers, data=request.body
        )
        SigV4Auth(credentials, SERVICE, self._region).add_auth(aws)
        headers = {name: str(value) for name, value in aws.headers.items()}
        return UpstreamRequest(request.method, request.url, headers, request.body)


def make_signer(options: BedrockOptions) -> SigV4Signer:
    if options.access_key_id is not None and options.secret_access_key is not None:
        return SigV4Signer(
            options.region,
            StaticCredentials(
                options.access_key_id, options.secret_access_key, options.session_token
            ),
        )
    return SigV4Signer(options.region, CredentialCache(default_chain(options.profile)))
