"""Tenant JWT verification at the edge.

Public keys only, algorithms pinned, `kid` resolved by dictionary lookup, every required claim
checked and capped, TTL capped, tokens naming their own keys (jku, jwk, x5u, x5c) refused. A
tenant reuses its token for minutes and signature checks cost ~0.25 ms, so a verified token's
claims are kept in a bounded cache until exp; expiry and revocation are checked on every
request, cached or not, so a revoked token stops at the first request after the edge's
revocation list is refreshed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from edge.jwks import Keys
from shared import claims
from shared.config_edge import AuthConfig
from shared.errors import Api, GatewayError
from shared.patterns import compile_patterns
from shared.revocation import EMPTY, Revocations

MAX_KID_LENGTH = 128


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """A token whose signature and claims passed: cached by token, so a repeat request skips
    the signature check and is checked against these facts (expiry, revocation, network)."""

    tenant: str
    tier: str
    models: str  # comma-joined patterns for the hop header; "*" = unrestricted
    expires_at: float
    allows: Callable[[str], bool]
    token_id: str  # jti and iat: what the revocation list is checked against, every request
    issued_at: float
    cidrs: tuple[claims.Network, ...] | None  # the `cidrs` claim; None = any address
    admin: bool = False  # the `admin` claim: an operator (sees every tenant's usage)
    tags: tuple[tuple[str, str], ...] = ()  # the `tags` claim: billing tags, sorted pairs


def _denied(message: str, code: str = "invalid_api_key") -> GatewayError:
    return GatewayError(401, message, code=code)


_CREDENTIAL_HEADERS = (b"authorization", b"x-api-key")


def refuse_duplicate_credentials(raw_headers: list[tuple[bytes, bytes]]) -> None:
    """400 if a credential header appears more than once: which copy a proxy, the edge and a
    log each pick differs ("last wins" here), so an ambiguous credential is never guessed at.
    Called only when the header map came out shorter than the raw list (some duplicate)."""
    for name in _CREDENTIAL_HEADERS:
        if sum(1 for key, _value in raw_headers if key == name) > 1:
            header = name.decode()
            raise GatewayError(
                400,
                f"the {header} header appears more than once; send exactly one",
                param=header,
                code="duplicate_header",
            )


class TokenVerifier:
    def __init__(self, auth: AuthConfig, keys: Keys, revocations: Revocations = EMPTY) -> None:
        self._auth = auth
        self._keys = keys
        self._revocations = revocations
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

    def replace_revocations(self, revocations: Revocations) -> bool:
        """Swap in a refreshed revocation list. Every request (cached tokens included) is
        checked against the current list, so the swap takes effect on the next request."""
        self._revocations = revocations
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
            self._refuse_revoked(cached)
            return cached
        verified = self._verify_signature(token, current)
        self._refuse_revoked(verified)
        if len(self._cache) >= self._auth.cache_size:
            del self._cache[next(iter(self._cache))]
        self._cache[token] = verified
        return verified

    def _refuse_revoked(self, token: VerifiedToken) -> None:
        if self._revocations.revokes(token.tenant, token.token_id, token.issued_at):
            raise _denied("the token has been revoked", "token_revoked")

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
        if not claims.KEY_REFERENCE_HEADERS.isdisjoint(header):
            raise _denied("the token names its own key (jku, jwk, x5u, x5c); it is not accepted")
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
        except (jwt.PyJWTError, ValueError, TypeError, ArithmeticError):
            # Attacker-controlled input: any parser failure is a 401, never a 500.
            raise _denied("the token's signature or claims are invalid") from None
        return self._claims(payload, now)

    def _claims(self, payload: dict[str, Any], now: float) -> VerifiedToken:
        if payload.get(claims.ISSUER) != self._auth.issuer:
            raise _denied("the token's issuer is not trusted")
        exp, iat = payload[claims.EXPIRES], payload[claims.ISSUED_AT]
        if not all(
            isinstance(t, int | float) and not isinstance(t, bool) and math.isfinite(t)
            for t in (exp, iat)
        ):
            raise _denied("the token's exp and iat must be numbers")
        if exp - iat > self._auth.max_ttl_s:
            limit = int(self._auth.max_ttl_s)
            raise _denied(
                f"the token lives longer than the {limit} s maximum; issue a shorter one",
                "token_ttl_too_long",
            )
        tenant = payload[claims.SUBJECT]
        if not claims.valid_name(tenant, claims.MAX_SUBJECT_LENGTH):
            raise _denied("the token's subject (tenant) is invalid")
        token_id = payload[claims.TOKEN_ID]
        if not claims.valid_name(token_id, claims.MAX_TOKEN_ID_LENGTH):
            raise _denied("the token's jti is invalid")
        tier = payload.get(claims.TIER, claims.DEFAULT_TIER)
        if not claims.valid_name(tier, claims.MAX_TIER_LENGTH):
            raise _denied("the token's tier claim is invalid")
        patterns = _models(payload.get(claims.MODELS))
        admin = payload.get(claims.ADMIN, False)
        if not isinstance(admin, bool):  # strictly true or false: never a truthy string
            raise _denied("the token's admin claim must be true or false")
        tags = claims.parse_tags_claim(payload.get(claims.TAGS, {}))
        if tags is None:
            raise _denied(
                f"the token's tags claim must be an object of at most {claims.MAX_TAGS} tags, "
                f"{claims.TAG_RULES}"
            )
        return VerifiedToken(
            tenant=tenant,
            tier=tier,
            models=",".join(patterns),
            expires_at=float(exp),
            allows=compile_patterns(patterns) if patterns else (lambda _name: False),
            token_id=token_id,
            issued_at=float(iat),
            cidrs=_cidrs(payload.get(claims.CIDRS)),
            admin=admin,
            tags=tags,
        )


def _models(models: Any) -> list[str]:
    if models is None:
        return ["*"]
    if (
        isinstance(models, list)
        and len(models) <= claims.MAX_MODELS
        and all(claims.valid_model_pattern(m) for m in models)
    ):
        return models
    raise _denied(
        f"the token's models claim must be a list of at most {claims.MAX_MODELS} model names "
        f"of at most {claims.MAX_MODEL_PATTERN_LENGTH} characters"
    )


def _cidrs(raw: Any) -> tuple[claims.Network, ...] | None:
    """The optional `cidrs` claim, strictly: a non-empty list of CIDRs. Anything else is a 401
    (a token meant to be network-bound must never silently work from everywhere)."""
    if raw is None:
        return None
    if isinstance(raw, list) and 0 < len(raw) <= claims.MAX_CIDRS:
        networks = [claims.parse_network(value) for value in raw]
        if all(n is not None for n in networks):
            return tuple(n for n in networks if n is not None)
    raise _denied(
        f"the token's cidrs claim must be a list of 1 to {claims.MAX_CIDRS} CIDRs "
        "such as 10.0.0.0/8"
    )
