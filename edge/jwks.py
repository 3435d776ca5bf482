"""The edge's public keys: from inline JWKS, a file, or a URL, refreshed for key rotation.

Only ES256 (P-256) and EdDSA (Ed25519) public keys are accepted; a key with private members is
refused. A refresh runs off the event loop's hot path (file reads in a thread, URL fetches on
the edge's own session), swaps the whole key set at once, and keeps the current keys if the
new document is unreachable or invalid.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import jwt

from shared import claims
from shared.config import AuthConfig
from shared.configparse import ConfigError
from shared.periodic import Periodic

log = logging.getLogger("interlock.edge")

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
    except ValueError:
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


def load_public_keys(auth: AuthConfig) -> Keys:
    """The keys available at start-up without I/O beyond a file read (URL keys load later)."""
    if auth.jwks_inline:
        return parse_jwks(auth.jwks_inline, "auth.jwks")
    if auth.jwks_url:
        return {}
    try:
        text = auth.jwks_file.read_text(encoding="utf-8")
    except OSError:
        raise ConfigError(
            f"auth.jwks_file: cannot read {auth.jwks_file}; "
            "run `interlock keys init` to create keys"
        ) from None
    return parse_jwks(text, "auth.jwks_file")


class JwksRefresher:
    def __init__(self, auth: AuthConfig, apply: Any) -> None:
        self._auth = auth
        self._apply = apply  # TokenVerifier.replace_keys
        self._periodic = Periodic(auth.jwks_refresh_s, self.refresh)
        # Its own small session: the relay's session leaves bodies compressed on purpose.
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self) -> Keys:
        auth = self._auth
        if auth.jwks_url:
            session = self._session
            if session is None:
                raise ConfigError("auth.jwks_url: the refresher is not started")
            try:
                timeout = aiohttp.ClientTimeout(total=10)
                async with session.get(auth.jwks_url, timeout=timeout) as response:
                    if response.status != 200:
                        raise ConfigError(f"auth.jwks_url: HTTP {response.status}")
                    text = await response.text()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ConfigError(f"auth.jwks_url: cannot fetch ({type(exc).__name__})") from None
            return parse_jwks(text, "auth.jwks_url")
        text = await asyncio.to_thread(auth.jwks_file.read_text, encoding="utf-8")
        return parse_jwks(text, "auth.jwks_file")

    async def refresh(self) -> bool:
        """True if the key set changed; failures keep the current keys and are logged."""
        try:
            keys = await self.fetch()
        except (ConfigError, OSError) as exc:
            log.warning("JWKS refresh failed, keeping the current keys: %s", exc)
            return False
        changed: bool = self._apply(keys)
        if changed:
            log.info("JWKS refreshed: %d key(s)", len(keys))
        return changed

    async def start(self) -> None:
        auth = self._auth
        if auth.jwks_inline:
            return
        if auth.jwks_url:  # the first fetch must succeed: no keys, no service
            self._session = aiohttp.ClientSession(trust_env=True)
            self._apply(await self.fetch())
        if auth.jwks_refresh_s > 0:
            self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None
