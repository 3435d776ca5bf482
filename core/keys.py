"""Signing keys and tenant tokens for operators. The edge only ever sees the public JWKS."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
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


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


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
    _write_private(auth.signing_key_file, pem)
    jwk = _public_jwk(private, algorithm)
    auth.jwks_file.parent.mkdir(parents=True, exist_ok=True)
    auth.jwks_file.write_text(json.dumps({"keys": [jwk]}, indent=2) + "\n", encoding="utf-8")
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


def issue_token(
    auth: AuthConfig,
    tenant: str,
    ttl_s: float,
    models: list[str] | None = None,
    tier: str | None = None,
    now: float | None = None,
) -> str:
    if ttl_s <= 0 or ttl_s > auth.max_ttl_s:
        raise ValueError(f"ttl must be between 1 s and auth.max_ttl ({int(auth.max_ttl_s)} s)")
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
    if models:
        payload[claims.MODELS] = models
    if tier:
        payload[claims.TIER] = tier
    return jwt.encode(payload, private, algorithm=alg, headers={"kid": kid})


def ensure_hop_secret(state_dir: Path) -> Path:
    file = state_dir / "hop-secret"
    if not file.exists():
        _write_private(file, secrets.token_urlsafe(48).encode())
    return file
