"""Tenant JWT verification at the edge.

Public keys only, algorithms pinned, `kid` resolved by dictionary lookup, every required claim
checked, TTL capped. A tenant reuses its token for minutes and signature checks cost ~0.25 ms,
so a verified token's claims are kept in a bounded cache until exp (checked on every request).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from edge.jwks import Keys
from shared import claims
from shared.config import AuthConfig
from shared.errors import Api, GatewayError
from shared.patterns import compile_patterns

MAX_KID_LENGTH = 128


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    tenant: str
    tier: str
    models: str  # comma-joined patterns for the hop header; "*" = unrestricted
    expires_at: float
    allows: Callable[[str], bool]


def _denied(message: str, code: str = "invalid_api_key") -> GatewayError:
    return GatewayError(401, message, code=code)


class TokenVerifier:
    def __init__(self, auth: AuthConfig, keys: Keys) -> None:
        self._auth = auth
        self._keys = keys
        self._cache: dict[str, VerifiedToken] = {}
        self._max_header = auth.max_header_bytes
        self._options: Any = {"require": list(claims.REQUIRED)}

    def replace_keys(self, keys: Keys) -> bool:
        """Swap in a refreshed key set; True if it changed. Verified tokens are forgotten on
        a change, so a token signed with a key just withdrawn stops working at once."""
        if keys.keys() == self._keys.keys():
            return False
        self._keys = keys
        self._cache = {}
        return True

    @staticmethod
    def credential(headers: Any, api: Api) -> str | None:
        """Bearer token from Authorization; the Anthropic API also uses x-api-key."""
        value: str | None = headers.get("authorization")
        if value is None and api == "anthropic":
            value = headers.get("x-api-key")
            if value is not None:
                return value if value.lower().startswith("bearer ") else f"Bearer {value}"
        return value

    def verify(
        self, header: str | None, now: float | None = None, api: Api = "openai"
    ) -> VerifiedToken:
        if not header:
            where = (
                "the x-api-key or Authorization header"
                if api == "anthropic"
                else "the Authorization header"
            )
            raise _denied(f"missing API key (a tenant token) in {where}", "missing_api_key")
        if len(header) > self._max_header:
            raise _denied("the Authorization header is too large", "token_too_large")
        if header[:7].lower() != "bearer ":
            raise _denied("the Authorization header must use the Bearer scheme")
        token = header[7:].strip()
        current = time.time() if now is None else now
        cached = self._cache.get(token)
        if cached is not None:
            if current >= cached.expires_at + self._auth.leeway_s:
                del self._cache[token]
                raise _denied("the token has expired", "token_expired")
            return cached
        verified = self._verify_signature(token, current)
        if len(self._cache) >= self._auth.cache_size:
            del self._cache[next(iter(self._cache))]
        self._cache[token] = verified
        return verified

    def _verify_signature(self, token: str, now: float) -> VerifiedToken:
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError):
            raise _denied("the token is malformed") from None
        alg = header.get("alg")
        if alg not in claims.ALGORITHMS:
            raise _denied("the token's algorithm is not accepted")
        if "crit" in header:
            raise _denied("the token uses critical header extensions this gateway does not support")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH:
            raise _denied("the token has no usable key id (kid)")
        entry = self._keys.get(kid)
        if entry is None or entry[0] != alg:
            raise _denied("the token was signed with an unknown key")
        auth = self._auth
        try:
            payload = jwt.decode(
                token,
                entry[1],
                algorithms=[alg],
                audience=auth.audience,
                issuer=auth.issuer,
                leeway=auth.leeway_s,
                options=self._options,
            )
        except jwt.ExpiredSignatureError:
            raise _denied("the token has expired", "token_expired") from None
        except jwt.ImmatureSignatureError:
            raise _denied(
                "the token is not valid yet (nbf or iat in the future)", "token_not_yet_valid"
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise _denied(f"the token lacks the required claim '{exc.claim}'") from None
        except jwt.InvalidAudienceError:
            raise _denied("the token's audience is not this gateway") from None
        except jwt.InvalidIssuerError:
            raise _denied("the token's issuer is not trusted") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            # Attacker-controlled input: any parser failure is a 401, never a 500.
            raise _denied("the token's signature or claims are invalid") from None
        return self._claims(payload, now)

    def _claims(self, payload: dict[str, Any], now: float) -> VerifiedToken:
        if payload.get(claims.ISSUER) != self._auth.issuer:
            raise _denied("the token's issuer is not trusted")
        exp, iat = payload[claims.EXPIRES], payload[claims.ISSUED_AT]
        if not isinstance(exp, int | float) or not isinstance(iat, int | float):
            raise _denied("the token's exp and iat must be numbers")
        if exp - iat > self._auth.max_ttl_s:
            limit = int(self._auth.max_ttl_s)
            raise _denied(
                f"the token lives longer than the {limit} s maximum; issue a shorter one",
                "token_ttl_too_long",
            )
        tenant = payload[claims.SUBJECT]
        # Any string crosses the hop exactly (it is encoded inside the hop credential).
        if not isinstance(tenant, str) or not tenant or len(tenant) > 256:
            raise _denied("the token's subject (tenant) is invalid")
        if not isinstance(payload[claims.TOKEN_ID], str) or not payload[claims.TOKEN_ID]:
            raise _denied("the token's jti is invalid")
        tier = payload.get(claims.TIER, claims.DEFAULT_TIER)
        if not isinstance(tier, str) or not tier:
            raise _denied("the token's tier claim is invalid")
        models = payload.get(claims.MODELS)
        if models is None:
            patterns: list[str] = ["*"]
        elif isinstance(models, list) and all(
            isinstance(m, str) and m and "," not in m and "\n" not in m for m in models
        ):
            patterns = models
        else:
            raise _denied("the token's models claim must be a list of model names")
        return VerifiedToken(
            tenant=tenant,
            tier=tier,
            models=",".join(patterns),
            expires_at=float(exp),
            allows=compile_patterns(patterns) if patterns else (lambda _name: False),
        )
