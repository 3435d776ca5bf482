"""Tenant JWT claim names and the rules both the issuer and the edge agree on.

The issuer (`interlock token issue`) and the edge apply the same caps and character rules, so a
token the CLI mints is never one the edge refuses, and a hand-made token with oversized or
control-character claims is a 401 at the edge rather than a failure further down (identity
travels to the core in HTTP headers, where CR, LF or NUL would break the request).
"""

from __future__ import annotations

import ipaddress
import re

SUBJECT = "sub"  # the tenant id
ISSUER = "iss"
AUDIENCE = "aud"
EXPIRES = "exp"
ISSUED_AT = "iat"
NOT_BEFORE = "nbf"
TOKEN_ID = "jti"
MODELS = "models"  # list of allowed model names or glob patterns; absent = all models
TIER = "tier"  # rate/budget tier name; absent = "default"
CIDRS = "cidrs"  # optional list of client networks (CIDR) the token may be used from
# true: an operator token (`interlock token issue --admin`): reads every tenant's usage.
ADMIN = "admin"
# {"key": "value", ...}: billing tags (`interlock token issue --tag k=v`) the ledger records on
# every request of the token; they win over the same key sent with the request.
TAGS = "tags"

REQUIRED = (EXPIRES, ISSUED_AT, ISSUER, AUDIENCE, SUBJECT, TOKEN_ID)

# Pinned: asymmetric only, so the edge never holds a key that can mint tokens.
ALGORITHMS = ("ES256", "EdDSA")

# JOSE headers that point at key material of the token's own choosing (RFC 7515 4.1.2-4.1.6).
# The gateway's keys come only from its configured JWKS, so a token naming its own key is
# refused outright: nothing is ever fetched from, or trusted in, a tenant-supplied header.
KEY_REFERENCE_HEADERS = frozenset({"jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256"})

DEFAULT_TIER = "default"

# Caps: far above any real use, small enough that a token cannot grow the edge's cache, the
# hop headers or the compiled model matcher without bound.
MAX_SUBJECT_LENGTH = 256
MAX_TOKEN_ID_LENGTH = 256
MAX_TIER_LENGTH = 64
MAX_MODELS = 256  # entries in the models claim
MAX_MODEL_PATTERN_LENGTH = 256
MAX_CIDRS = 64

# Billing tags (the token's claim, the x-interlock-tags header, the request body): they become
# ledger and rollup rows, so the same rules and bound everywhere. A value has no comma, since the
# header separates tags with commas.
MAX_TAGS = 10
_TAG_KEY = re.compile(r"[a-z0-9_.-]{1,64}")
_TAG_VALUE = re.compile(r"[\x20-\x2b\x2d-\x7e]{1,128}")  # printable ASCII but ','
TAG_RULES = "keys of 1-64 characters [a-z0-9_.-], values of 1-128 printable ASCII but ','"

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def valid_name(value: object, max_length: int) -> bool:
    """A claim value that can identify something: a non-empty string within `max_length`,
    without control characters (C0, DEL, C1) and without leading or trailing whitespace
    (which HTTP header handling would strip, so the identity would not round-trip)."""
    if not isinstance(value, str) or not value or len(value) > max_length:
        return False
    if value != value.strip():
        return False
    return _CONTROL.search(value) is None


def valid_model_pattern(value: object) -> bool:
    """One entry of the models claim: a name or glob; commas would split it on the hop."""
    return valid_name(value, MAX_MODEL_PATTERN_LENGTH) and "," not in str(value)


def valid_tag(key: object, value: object) -> bool:
    """One billing tag: a key of 1-64 [a-z0-9_.-], a value of 1-128 printable ASCII but ','
    and without surrounding spaces (the header strips them, so they would not round-trip)."""
    return (
        isinstance(key, str)
        and isinstance(value, str)
        and _TAG_KEY.fullmatch(key) is not None
        and _TAG_VALUE.fullmatch(value) is not None
        and value == value.strip()
    )


def parse_tags_claim(raw: object) -> tuple[tuple[str, str], ...] | None:
    """The `tags` claim (an object of at most MAX_TAGS valid tags) as sorted pairs; None if it
    is anything else, so a malformed claim is refused, never partly taken."""
    if not isinstance(raw, dict) or len(raw) > MAX_TAGS:
        return None
    if not all(valid_tag(key, value) for key, value in raw.items()):
        return None
    return tuple(sorted(raw.items()))


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_network(value: object) -> Network | None:
    """A CIDR ("10.0.0.0/8", "2001:db8::/32") or a single address, strictly: no host bits set
    beyond the prefix, no zone ids, no surrounding spaces. None if it is not one."""
    if not isinstance(value, str) or not 0 < len(value) <= 64 or "%" in value:
        return None
    if value != value.strip():
        return None
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError:
        return None
