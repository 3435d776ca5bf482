"""The edge's public keys: from inline JWKS, a file, or a URL, refreshed for key rotation.

Only ES256 (P-256) and EdDSA (Ed25519) public keys are accepted; a key with private members is
refused. A refresh runs off the event loop's hot path (file reads in a thread, URL fetches on
the edge's own session), swaps the whole key set at once, and keeps the current keys if the
new document is unreachable or invalid.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jwt

from edge.refresh import Refresher, Source, read_capped
from shared import claims
from shared.config_edge import AuthConfig
from shared.configparse import ConfigError

Keys = dict[str, tuple[str, Any]]  # kid -> (algorithm, public key)


def _infer_alg(jwk: dict[str, Any]) -> str | None:
    if jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
        return "ES256"
    if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
        return "EdDSA"
    return None


def parse_jwks(text: str, source: str) -> Keys:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise ConfigError(f"{source}: not valid JSON") from None
    keys_raw = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys_raw, list) or not keys_raw:
        raise ConfigError(f"{source}: expected a JWKS object with a non-empty keys list")
    keys: Keys = {}
    for i, jwk in enumerate(keys_raw):
        where = f"{source}.keys[{i}]"
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str) or not jwk["kid"]:
            raise ConfigError(f"{where}: each key needs a kid")
        if "d" in jwk:
            raise ConfigError(f"{where}: contains a private key; the edge takes public keys only")
        alg = jwk.get("alg") or _infer_alg(jwk)
        if alg not in claims.ALGORITHMS or alg != _infer_alg(jwk):
            raise ConfigError(f"{where}: only ES256 (P-256) and EdDSA (Ed25519) keys are accepted")
        try:
            keys[jwk["kid"]] = (alg, jwt.PyJWK(jwk, algorithm=alg).key)
        except jwt.PyJWKError as exc:
            raise ConfigError(f"{where}: invalid key ({exc})") from None
    return keys


MAX_JWKS_BYTES = 1024 * 1024


def jwks_source(auth: AuthConfig) -> Source:
    return Source(
        what="JWKS",
        kept="keys",
        url=auth.jwks_url,
        url_key="auth.jwks_url",
        file=auth.jwks_file,
        file_key="auth.jwks_file",
        max_bytes=MAX_JWKS_BYTES,
        interval_s=auth.jwks_refresh_s,
    )


def load_public_keys(auth: AuthConfig) -> Keys:
    """The keys available at start-up without I/O beyond a file read (URL keys load later)."""
    if auth.jwks_inline:
        return parse_jwks(auth.jwks_inline, "auth.jwks")
    if auth.jwks_url:
        return {}
    try:
        text = read_capped(jwks_source(auth))
    except OSError:
        raise ConfigError(
            f"auth.jwks_file: cannot read {auth.jwks_file}; "
            "run `interlock keys init` to create keys"
        ) from None
    return parse_jwks(text, "auth.jwks_file")


class JwksRefresher(Refresher[Keys]):
    """Key rotation: the JWKS file or URL re-read in the background (inline keys never are)."""

    def __init__(self, auth: AuthConfig, apply: Callable[[Keys], bool]) -> None:
        super().__init__(jwks_source(auth), parse_jwks, apply)  # apply: replace_keys
        self._inline = auth.jwks_inline is not None

    async def start(self) -> None:
        if not self._inline:
            await super().start()
