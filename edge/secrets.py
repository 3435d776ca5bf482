"""The edge's secrets: the hop secret it signs with and an inline public JWKS, either of which
may be a reference (aws-sm://..., e.g. the hop secret from the SAM template).

Read once at start-up (a missing or malformed one fails it, naming the reference) and then
refreshed in the background by a SecretRefresher the edge's lifespan starts. The edge signs
with the hop secret's current value while the core accepts the current and the pending one.
boto3 is imported only for a reference: with literals it stays out of the Lambda cold start.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from edge.jwks import Keys, parse_jwks
from shared import hop
from shared.config_edge import AuthConfig, EdgeTierConfig
from shared.secret import Secret, SecretRef
from shared.secret_refresh import SecretRefresher, references
from shared.secret_sources import as_secret


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
