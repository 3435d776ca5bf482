"""Tenant JWT claim names and the rules both the issuer and the edge agree on."""

from __future__ import annotations

SUBJECT = "sub"  # the tenant id
ISSUER = "iss"
AUDIENCE = "aud"
EXPIRES = "exp"
ISSUED_AT = "iat"
NOT_BEFORE = "nbf"
TOKEN_ID = "jti"
MODELS = "models"  # list of allowed model names or glob patterns; absent = all models
TIER = "tier"  # rate/budget tier name; absent = "default"

REQUIRED = (EXPIRES, ISSUED_AT, ISSUER, AUDIENCE, SUBJECT, TOKEN_ID)

# Pinned: asymmetric only, so the edge never holds a key that can mint tokens.
ALGORITHMS = ("ES256", "EdDSA")

DEFAULT_TIER = "default"
