"""The edge's secrets: the hop secret it signs with and an inline public JWKS, either of which
may be a reference (aws-sm://..., e.g. the hop secret from the SAM template).

Read once at start-up (a missing or malformed one fails it, naming the reference) and then
refreshed in the background by a SecretRefresher the edge's lifespan starts. The edge signs
with the hop secret's current value while the core accepts the current and the pending one.
boto3 is imported only for a reference: with literals it stays out of the Lambda cold start.

On Lambda the background timer does not run while the environment is frozen, which may last
longer than the core keeps accepting a value rotated out: so before signing, `fresh` reads a
hop secret that has gone unread for longer than its refresh allows (waiting at most
FRESH_WAIT_S; on failure the edge signs with what it has).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable

from edge.jwks import Keys, parse_jwks
from shared import hop
from shared.config_edge import AuthConfig, EdgeTierConfig
from shared.secret import Secret, SecretRef
from shared.secret_refresh import SecretRefresher, references
from shared.secret_sources import as_secret

FRESH_WAIT_S = 2.0
STALE_AFTER = 1.5  # refresh intervals without a read after which the hop secret is stale


class EdgeSecrets:
    def __init__(self, config: EdgeTierConfig) -> None:
        self.hop_secret: Secret = hop.resolve_secret(config.hop.secret, config.state_dir)
        inline = config.auth.jwks_inline
        jwks = as_secret(inline, "auth.jwks") if inline else None
        self.refresher = SecretRefresher(
            references([self.hop_secret, jwks]), config.secrets.refresh_s
        )
        self.refresher.resolve_now()
        hop.check_resolved(self.hop_secret)
        self._jwks = jwks if isinstance(jwks, SecretRef) else None
        self._hop = self.hop_secret if isinstance(self.hop_secret, SecretRef) else None
        self._stale_s = STALE_AFTER * config.secrets.refresh_s  # 0: refreshing is off
        self._tried_at = time.monotonic()
        # The auth settings with a referenced JWKS's value in place: parsed as inline keys are.
        self.auth: AuthConfig = config.auth
        if self._jwks is not None:
            self.auth = dataclasses.replace(self.auth, jwks_inline=self._jwks.reveal())

    def follow_jwks(self, replace_keys: Callable[[Keys], bool]) -> None:
        """A referenced JWKS that changes replaces the verifier's keys (key rotation)."""
        if self._jwks is not None:
            self.refresher.watch(
                self._jwks, lambda text: replace_keys(parse_jwks(text, "auth.jwks"))
            )

    async def fresh(self) -> None:
        """Before signing: a hop secret unread for too long (a thawed Lambda environment whose
        timer has not run yet) is read first; one such try per refresh interval, so an
        unreachable Secrets Manager does not slow every request."""
        ref = self._hop
        if ref is None or self._stale_s <= 0:
            return
        now = time.monotonic()
        if now - ref.refreshed_at <= self._stale_s or now - self._tried_at < self._stale_s:
            return
        self._tried_at = now
        # Shielded: a read that outlasts the wait still lands for the next request.
        # asyncio.timeout: Python 3.11's wait_for may swallow the request's own cancellation.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(FRESH_WAIT_S):
                await asyncio.shield(ref.reread())
