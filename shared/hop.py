"""The edge -> core hop contract.

The core must never trust tenant identity from plain headers: a client could send them. The edge
sends the identity in ONE header, `x-interlock-hop: v2.<payload>.<mac>`:

- `payload` is base64url(orjson({tenant, tier, models, exp, admin, tags, iat, nonce, body})).
  Encoding the identity as JSON inside base64url means any `sub`/`tier` string the token may
  carry (any Unicode, spaces, CR, NUL, DEL) crosses the hop byte-exact; raw header values could
  not (aiohttp refuses control characters, the core decodes headers as latin-1 and strips
  spaces).
- `mac` is base64url(HMAC-SHA256(secret, "v2\\n" method "\\n" path "\\n" request-id "\\n"
  payload)): the credential is bound to the method, the path (with its query string, if
  any: `/v1/usage?...`), the request id (kept in its own
  `x-request-id` header), the token's expiry, the time it was signed, a random nonce and the
  sha256 of the exact body bytes. The core checks all of them, then claims the nonce once in
  the state store, so a captured credential cannot be replayed, not even with the same body.

Two body modes. JSON requests (the fast path) sign the body's sha256 (`body` is its hex
digest): the edge holds them whole anyway, and one hash and one HMAC is the cheapest check.
Uploads (multipart, binary) use `body: "streamed"` and are never held whole by either tier: the
credential is signed before the first body byte, and the body crosses the hop framed
(shared/hop_stream.py) so the core verifies it as it reads:

- a per-request chain key `seed = HMAC(secret, "interlock-hop-stream\\n" mac)`, where `mac` is
  the credential's own MAC (so it is bound to the method, path, request id, identity and the
  one-time nonce) and `secret` the value that made that MAC (key rotation keeps working);
- the body as frames `u32 length (big-endian) | 32-byte tag | data`, 1 to 256 KiB of data
  each, where `tag_i = HMAC(seed, tag_{i-1} | u32 length | data)` (`tag_0` chains from 32
  zero bytes);
- a closing frame of length 0 with its own chained tag, then the end of the request.

Truncation (no closing frame: an edge that refused an over-limit upload mid-stream, or a
connection cut), reordering, dropped or altered frames, frames spliced from another request
(another seed) and bytes after the close all break the chain; the core refuses the request
(401) and never calls a provider. Replay is refused by the nonce, claimed before the body is
read.

Everything a client can reach on the core goes through `authenticate` first, which refuses any
malformed value (non-ASCII, oversized, wrong shape, wrong types) with `None`, never an exception.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import math
import os
import time
from base64 import urlsafe_b64decode, urlsafe_b64encode
from dataclasses import dataclass, field, replace
from typing import Any, TypeGuard

import orjson

from shared import claims
from shared.configparse import ConfigError
from shared.secret import Secret, SecretRef

HOP_HEADER = "x-interlock-hop"
REQUEST_ID_HEADER = "x-request-id"
TRACEPARENT_HEADER = "traceparent"
# On the core's answers, for the edge only (it drops them before relaying): whether the core's
# nonce claims are seen by every replica ("shared": Redis) or only by itself ("local"); and,
# on a 401 for a nonce claimed already, "replayed" (edge/corecall.py says why both matter).
NONCES_HEADER = "x-interlock-nonces"
NONCES_SHARED = "shared"
NONCES_LOCAL = "local"
REFUSED_HEADER = "x-interlock-hop-refused"
REFUSED_REPLAYED = "replayed"

HOP_VERSION = "v2"
# How far the signing time may be from the core's clock. Nonces are remembered for this long,
# so it bounds the replay store too: keep it short (clock sync between tiers is assumed).
DEFAULT_MAX_SKEW_S = 60
# Past the edge's own end of trust in the token (exp + the edge's JWT leeway), the core allows
# only this much for clock difference and transit.
EXPIRY_LEEWAY_S = 5
# A token header is capped at 64 KiB by auth.max_header_bytes; its claims, re-encoded, fit.
MAX_CREDENTIAL_CHARS = 96 * 1024
MAX_REQUEST_ID_CHARS = 128
_MAC_CHARS = 43  # base64url of 32 bytes, unpadded
_NONCE_CHARS = 32
_DIGEST_CHARS = 64
MIN_SECRET_CHARS = 32
_MAX_TIME = 1 << 40  # seconds; far beyond any real clock, small enough for float-exact maths
_B64URL = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True, slots=True)
class HopIdentity:
    tenant: str
    tier: str
    models: str  # comma-separated allowed-model patterns from the token; "*" = any
    expires_at: int  # the edge's last second of trust in the token (exp + its leeway)
    admin: bool = False  # an operator token (the usage API's every-tenant view)
    # The token's billing tags (sorted pairs, checked by shared.claims.parse_tags_claim): signed
    # here so the core can let them win over the request's own tags.
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class HopClaims:
    """A credential whose MAC checked out; freshness, body and nonce are checked next."""

    identity: HopIdentity
    issued_at: int
    nonce: str
    body_digest: str  # sha256 hex of the body bytes the edge sent, or BODY_STREAMED
    # The streamed mode's chain key (shared/hop_stream.py); None for a whole body.
    stream_seed: bytes | None = field(default=None, repr=False)

    @property
    def streamed(self) -> bool:
        return self.body_digest == BODY_STREAMED


# The `body` claim of the streamed mode: the body follows, framed and chained.
BODY_STREAMED = "streamed"
_STREAM_LABEL = b"interlock-hop-stream\n"


class HopKey:
    """The shared secret, keyed once per value: each MAC then costs one copy of the keyed
    state. The secret may be a reference (shared.secret.SecretRef) that rotates under it: the
    signer (the edge) always signs with the current value; the verifier (the core) accepts
    every value the secret accepts mid-rotation (current, pending, the one just replaced)."""

    __slots__ = ("_keyed", "_secret")

    def __init__(self, secret: bytes | Secret) -> None:
        self._secret = secret if isinstance(secret, Secret) else Secret(secret.decode())
        self._keyed: dict[str, hmac.HMAC] = {}

    def _for(self, value: str) -> hmac.HMAC:
        keyed = self._keyed.get(value)
        if keyed is None:
            if len(self._keyed) >= _MAX_KEYED:  # rotations only: a handful of values ever
                self._keyed.clear()
            keyed = self._keyed[value] = hmac.new(value.encode(), digestmod=hashlib.sha256)
        return keyed

    def mac(self, method: str, path: str, request_id: str, payload: bytes) -> str:
        return _mac(self._for(self._secret.reveal()), method, path, request_id, payload)

    def verify(self, method: str, path: str, request_id: str, payload: bytes, mac: str) -> bool:
        """Whether `mac` was made with any value the secret accepts now."""
        return self._matching(method, path, request_id, payload, mac) is not None

    def _matching(
        self, method: str, path: str, request_id: str, payload: bytes, mac: str
    ) -> hmac.HMAC | None:
        """The keyed state of the value that made `mac`, if any value the secret accepts did."""
        for value in self._secret.accepted():
            keyed = self._for(value)
            if hmac.compare_digest(_mac(keyed, method, path, request_id, payload), mac):
                return keyed
        return None

    def stream_seed(self, mac: str, keyed: hmac.HMAC | None = None) -> bytes:
        """The streamed body's chain key for the credential whose MAC is `mac` (made with
        `keyed`, else with the current value: the signer's case)."""
        state = (keyed or self._for(self._secret.reveal())).copy()
        state.update(_STREAM_LABEL + mac.encode("ascii"))
        return state.digest()

    def __repr__(self) -> str:
        return "HopKey(********)"


_MAX_KEYED = 8


def _mac(keyed: hmac.HMAC, method: str, path: str, request_id: str, payload: bytes) -> str:
    mac = keyed.copy()
    mac.update(
        b"\n".join(
            (
                HOP_VERSION.encode(),
                method.encode("ascii", "replace"),
                path.encode("utf-8", "surrogatepass"),
                request_id.encode("ascii", "replace"),
                payload,
            )
        )
    )
    return urlsafe_b64encode(mac.digest()).rstrip(b"=").decode("ascii")


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def sign(
    key: HopKey,
    identity: HopIdentity,
    method: str,
    path: str,
    request_id: str,
    body: bytes,
    now: float | None = None,
    nonce: str | None = None,
) -> str:
    """The credential for one request: one sha256 of the body, one HMAC."""
    return _credential(key, identity, (method, path, request_id), body_digest(body), now, nonce)[0]


def sign_streamed(
    key: HopKey,
    identity: HopIdentity,
    method: str,
    path: str,
    request_id: str,
    now: float | None = None,
    nonce: str | None = None,
) -> tuple[str, bytes]:
    """The credential for a streamed body, and the chain key its frames are tagged with."""
    credential, mac = _credential(
        key, identity, (method, path, request_id), BODY_STREAMED, now, nonce
    )
    return credential, key.stream_seed(mac)


def _credential(
    key: HopKey,
    identity: HopIdentity,
    bound: tuple[str, str, str],
    body: str,
    now: float | None,
    nonce: str | None,
) -> tuple[str, str]:
    method, path, request_id = bound
    claims = {
        "tenant": identity.tenant,
        "tier": identity.tier,
        "models": identity.models,
        "exp": identity.expires_at,
        "admin": identity.admin,
        "tags": dict(identity.tags),
        "iat": int(time.time() if now is None else now),
        "nonce": nonce or os.urandom(_NONCE_CHARS // 2).hex(),
        "body": body,
    }
    payload = urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=")
    mac = key.mac(method, path, request_id, payload)
    return f"{HOP_VERSION}.{payload.decode('ascii')}.{mac}", mac


def valid_request_id(value: str | None) -> bool:
    """Visible ASCII, bounded: the id is echoed in headers and logs."""
    return (
        value is not None
        and 0 < len(value) <= MAX_REQUEST_ID_CHARS
        and value.isascii()
        and value.isprintable()
        and " " not in value
    )


def authenticate(
    key: HopKey, credential: str | None, method: str, path: str, request_id: str
) -> HopClaims | None:
    """The claims if the credential is well-formed and its MAC matches; otherwise None.

    The shape is checked before any decoding, and the payload is decoded only once the MAC has
    proven the edge wrote it; no input makes this raise."""
    if credential is None or len(credential) > MAX_CREDENTIAL_CHARS or not credential.isascii():
        return None
    parts = credential.split(".")
    if len(parts) != 3 or parts[0] != HOP_VERSION or len(parts[2]) != _MAC_CHARS:
        return None
    payload = parts[1].encode("ascii")
    if not payload or not _B64URL.issuperset(payload):
        return None
    keyed = key._matching(method, path, request_id, payload, parts[2])
    if keyed is None:
        return None
    try:
        raw = orjson.loads(urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        return None
    found = _claims(raw)
    if found is not None and found.streamed:
        return replace(found, stream_seed=key.stream_seed(parts[2], keyed))
    return found


def _claims(raw: Any) -> HopClaims | None:
    if not isinstance(raw, dict):
        return None
    tenant, tier, models = raw.get("tenant"), raw.get("tier"), raw.get("models")
    exp, iat, nonce, digest = raw.get("exp"), raw.get("iat"), raw.get("nonce"), raw.get("body")
    if not (isinstance(tenant, str) and tenant and isinstance(tier, str) and tier):
        return None
    if not isinstance(models, str) or not (_time(exp) and _time(iat)):
        return None
    if not (isinstance(nonce, str) and len(nonce) == _NONCE_CHARS and nonce.isascii()):
        return None
    if not (isinstance(digest, str) and (len(digest) == _DIGEST_CHARS or digest == BODY_STREAMED)):
        return None
    admin = raw.get("admin", False)
    tags = claims.parse_tags_claim(raw.get("tags", {}))
    if not isinstance(admin, bool) or tags is None:
        return None
    return HopClaims(HopIdentity(tenant, tier, models, exp, admin, tags), iat, nonce, digest)


def _time(value: Any) -> TypeGuard[int]:
    """A whole number of seconds in range (JSON true/false and floats are refused)."""
    return type(value) is int and 0 <= value < _MAX_TIME


def remember_for(claims: HopClaims, now: float, max_skew_s: float) -> float:
    """Seconds the nonce must be remembered: until the credential would be refused anyway as
    stale or expired; 0 when it is already refused (too old, too new, or the token expired)."""
    if abs(now - claims.issued_at) > max_skew_s:
        return 0.0
    until = min(claims.issued_at + max_skew_s, claims.identity.expires_at + EXPIRY_LEEWAY_S)
    return float(math.ceil(until - now) + 1) if now <= until else 0.0


def expires_at(token_exp: float, leeway_s: float) -> int:
    """The `exp` the edge puts on the hop: the last second it would still accept the token."""
    return math.floor(token_exp + leeway_s)


def resolve_secret(
    configured: str | None,
    state_dir: os.PathLike[str] | str,
    env: dict[str, str] | None = None,
    verifier: bool = False,
) -> Secret:
    """hop.secret from config, else $INTERLOCK_HOP_SECRET, else <state_dir>/hop-secret. Either
    of the first two may be a reference (aws-sm://...): a SecretRef read at start-up by the
    tier's SecretRefresher, its length checked then. The `verifier` (the core) reads the
    pending value (AWSPENDING) too; the signer (the edge) needs only the current one."""
    from pathlib import Path

    from shared.secret_sources import as_secret

    environ = os.environ if env is None else env
    secret = configured or environ.get("INTERLOCK_HOP_SECRET")
    if not secret:
        file = Path(state_dir) / "hop-secret"
        if file.is_file():
            secret = file.read_text(encoding="utf-8").strip()
    if not secret:
        raise ConfigError(
            "hop.secret: not set; set hop.secret, INTERLOCK_HOP_SECRET, "
            "or run `interlock up` once to create one"
        )
    resolved = as_secret(secret, "hop.secret", wants_pending=verifier)
    if not isinstance(resolved, SecretRef) and len(secret) < MIN_SECRET_CHARS:
        raise ConfigError(f"hop.secret: must be at least {MIN_SECRET_CHARS} characters")
    return resolved


def check_resolved(secret: Secret) -> None:
    """A referenced hop secret's values, once read, obey the literal's rule."""
    if any(len(value) < MIN_SECRET_CHARS for value in secret.accepted()):
        raise ConfigError(f"hop.secret: must be at least {MIN_SECRET_CHARS} characters")
