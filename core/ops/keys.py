"""Signing keys and tenant tokens for operators. The edge only ever sees the public JWKS."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from shared import claims
from shared.config import AuthConfig


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _public_jwk(private_key: Any, alg: str) -> dict[str, str]:
    if alg == "ES256":
        numbers = private_key.public_key().public_numbers()
        jwk = {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64(numbers.x.to_bytes(32, "big")),
            "y": _b64(numbers.y.to_bytes(32, "big")),
        }
    else:
        raw = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": _b64(raw)}
    # RFC 7638 thumbprint: the key's own stable id.
    canonical = json.dumps(jwk, sort_keys=True, separators=(",", ":")).encode()
    jwk["kid"] = _b64(hashlib.sha256(canonical).digest())[:16]
    jwk["alg"] = alg
    jwk["use"] = "sig"
    return jwk


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `path` whole or not at all, ending with exactly `mode`.

    The bytes go to a temp file in the same directory, created 0600 by mkstemp (so a secret is
    never readable by others, not even while it is written), flushed to disk, then renamed
    over the target. A file written over therefore takes the new mode instead of keeping its
    old one, and a reader (the edge refreshing JWKS or revocations) never sees half a file.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode != 0o600:
            os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def write_private(path: Path, data: bytes) -> None:
    """A secret (signing key, hop secret, demo token, revocation list): atomically, 0600."""
    write_atomic(path, data, 0o600)


def secure_state_dir(state_dir: Path) -> Path:
    """The state dir, created 0700; one left 0755 by an older version is tightened (it holds
    the signing key, the hop secret and tenant tokens)."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = state_dir.stat()
    if info.st_mode & 0o077 and info.st_uid == os.getuid():
        state_dir.chmod(0o700)
    return state_dir


def init_keys(auth: AuthConfig, alg: str | None = None, force: bool = False) -> dict[str, str]:
    """Create a signing key and its public JWKS; refuses to overwrite unless `force`."""
    algorithm = alg or auth.algorithm
    if auth.signing_key_file.exists() and not force:
        raise FileExistsError(f"{auth.signing_key_file} exists; pass --force to replace it")
    private: Any = (
        ec.generate_private_key(ec.SECP256R1())
        if algorithm == "ES256"
        else ed25519.Ed25519PrivateKey.generate()
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(auth.signing_key_file, pem)
    jwk = _public_jwk(private, algorithm)
    # Public, and read by edges that may run as another user: 0644, but still atomic.
    write_atomic(auth.jwks_file, (json.dumps({"keys": [jwk]}, indent=2) + "\n").encode(), 0o644)
    return jwk


def load_signing_key(auth: AuthConfig) -> tuple[Any, str, str]:
    """(private key, alg, kid) from the PEM file; kid derived the same way as in the JWKS."""
    private = serialization.load_pem_private_key(auth.signing_key_file.read_bytes(), password=None)
    if isinstance(private, ec.EllipticCurvePrivateKey):
        alg = "ES256"
    elif isinstance(private, ed25519.Ed25519PrivateKey):
        alg = "EdDSA"
    else:
        raise ValueError(f"{auth.signing_key_file}: only P-256 and Ed25519 keys are supported")
    return private, alg, _public_jwk(private, alg)["kid"]


def _check_claims(
    tenant: str, models: list[str] | None, tier: str | None, cidrs: list[str] | None
) -> None:
    """The edge's claim rules (shared/claims.py), applied before signing: the issuer never
    mints a token the edge would refuse, and an empty model list is never "every model"."""
    if not claims.valid_name(tenant, claims.MAX_SUBJECT_LENGTH):
        raise ValueError(
            f"tenant must be 1 to {claims.MAX_SUBJECT_LENGTH} characters without control "
            "characters or surrounding spaces"
        )
    if models is not None and (
        not models
        or len(models) > claims.MAX_MODELS
        or not all(claims.valid_model_pattern(m) for m in models)
    ):
        raise ValueError(
            f"models must list 1 to {claims.MAX_MODELS} model names or globs "
            "(use '*' for every model)"
        )
    if tier is not None and not claims.valid_name(tier, claims.MAX_TIER_LENGTH):
        raise ValueError(f"tier must be 1 to {claims.MAX_TIER_LENGTH} printable characters")
    if cidrs is not None and (
        not cidrs
        or len(cidrs) > claims.MAX_CIDRS
        or any(claims.parse_network(c) is None for c in cidrs)
    ):
        raise ValueError(f"cidrs must list 1 to {claims.MAX_CIDRS} CIDRs such as 10.0.0.0/8")


def issue_token(
    auth: AuthConfig,
    tenant: str,
    ttl_s: float,
    models: list[str] | None = None,
    tier: str | None = None,
    now: float | None = None,
    cidrs: list[str] | None = None,
    admin: bool = False,
    tags: dict[str, str] | None = None,
) -> str:
    """A signed tenant token. models None: every model (the claim is omitted); an empty list
    is refused, never widened. `admin`: an operator token (the usage API's every-tenant view).
    `tags`: billing tags on every request of the token, winning over the request's own."""
    if ttl_s <= 0 or ttl_s > auth.max_ttl_s:
        raise ValueError(f"ttl must be between 1 s and auth.max_ttl ({int(auth.max_ttl_s)} s)")
    _check_claims(tenant, models, tier, cidrs)
    private, alg, kid = load_signing_key(auth)
    issued = int(time.time() if now is None else now)
    payload: dict[str, Any] = {
        claims.ISSUER: auth.issuer,
        claims.AUDIENCE: auth.audience,
        claims.SUBJECT: tenant,
        claims.ISSUED_AT: issued,
        claims.NOT_BEFORE: issued,
        claims.EXPIRES: issued + int(ttl_s),
        claims.TOKEN_ID: uuid.uuid4().hex,
    }
    if models is not None:
        payload[claims.MODELS] = models
    if tier is not None:
        payload[claims.TIER] = tier
    if cidrs is not None:
        payload[claims.CIDRS] = cidrs
    if admin:
        payload[claims.ADMIN] = True
    if tags:
        if claims.parse_tags_claim(tags) is None:
            raise ValueError(f"tags: at most {claims.MAX_TAGS}, {claims.TAG_RULES}")
        payload[claims.TAGS] = tags
    return jwt.encode(payload, private, algorithm=alg, headers={"kid": kid})


def ensure_hop_secret(state_dir: Path) -> Path:
    """The hop secret file, created 0600 if missing; an existing one readable by others (an
    older version wrote it with the umask's mode) is tightened to 0600."""
    file = state_dir / "hop-secret"
    if not file.exists():
        write_private(file, secrets.token_urlsafe(48).encode())
    elif file.stat().st_mode & 0o077:
        file.chmod(0o600)
    return file
