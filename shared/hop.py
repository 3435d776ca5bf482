"""The edge -> core hop contract.

The core must never trust tenant identity from plain headers: a client could send them. The edge
signs the identity headers with a secret only edge and core share (HMAC-SHA256, cheap enough
for every request), and the core recomputes the signature before it reads any of them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from dataclasses import dataclass

HOP_HEADER = "x-interlock-hop"
TENANT_HEADER = "x-interlock-tenant"
TIER_HEADER = "x-interlock-tier"
MODELS_HEADER = "x-interlock-models"
REQUEST_ID_HEADER = "x-request-id"
TRACEPARENT_HEADER = "traceparent"

# Headers a client may never set itself: the edge drops them before forwarding.
RESERVED_PREFIX = "x-interlock-"

HOP_VERSION = "v1"
DEFAULT_MAX_SKEW_S = 300


@dataclass(frozen=True, slots=True)
class HopIdentity:
    tenant: str
    tier: str
    models: str  # comma-separated allowed-model patterns from the token; "*" = any
    request_id: str


def _message(ts: str, identity: HopIdentity, method: str, path: str) -> bytes:
    return "\n".join(
        (
            HOP_VERSION,
            ts,
            identity.request_id,
            identity.tenant,
            identity.tier,
            identity.models,
            method,
            path,
        )
    ).encode()


def sign(
    secret: bytes, identity: HopIdentity, method: str, path: str, now: float | None = None
) -> str:
    ts = str(int(time.time() if now is None else now))
    digest = hmac.new(secret, _message(ts, identity, method, path), hashlib.sha256).hexdigest()
    return f"{HOP_VERSION}:{ts}:{digest}"


def verify(
    secret: bytes,
    credential: str,
    identity: HopIdentity,
    method: str,
    path: str,
    max_skew_s: int = DEFAULT_MAX_SKEW_S,
    now: float | None = None,
) -> bool:
    parts = credential.split(":")
    if len(parts) != 3 or parts[0] != HOP_VERSION or not parts[1].isdigit():
        return False
    ts = parts[1]
    current = time.time() if now is None else now
    if abs(current - int(ts)) > max_skew_s:
        return False
    expected = hmac.new(secret, _message(ts, identity, method, path), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts[2])


def resolve_secret(
    configured: str | None, state_dir: os.PathLike[str] | str, env: dict[str, str] | None = None
) -> bytes:
    """hop.secret from config, else $INTERLOCK_HOP_SECRET, else <state_dir>/hop-secret."""
    from pathlib import Path

    from shared.configparse import ConfigError

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
    if len(secret) < 32:
        raise ConfigError("hop.secret: must be at least 32 characters")
    return secret.encode()
