"""Billing tags from the request: `x-interlock-tags: project=search,env=prod`, so one tenant
key can be billed per department, project or end customer (the ledger records them).

Validated and bounded, since they become rollup rows: at most 10 tags, a key of 1-64 chars
[a-z0-9_.-], a value of 1-128 printable ASCII characters (no comma). Anything else is a 400
naming the header, never silently dropped (a typo would otherwise bill to nobody).
"""

from __future__ import annotations

import re

from core.ledger.record import Tags
from shared.errors import GatewayError

HEADER = "x-interlock-tags"
MAX_TAGS = 10
_KEY = re.compile(r"[a-z0-9_.-]{1,64}")
_VALUE = re.compile(r"[\x20-\x2b\x2d-\x7e]{1,128}")  # printable ASCII but ','


def _invalid(why: str) -> GatewayError:
    return GatewayError(400, f"{HEADER}: {why}", param=HEADER, code="invalid_tags")


def parse_tags(header: str | None) -> Tags:
    """The header's tags, sorted by key; () when there is none."""
    if header is None or not header.strip():
        return ()
    tags: dict[str, str] = {}
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or not _KEY.fullmatch(key):
            raise _invalid("expected key=value pairs, keys of 1-64 characters [a-z0-9_.-]")
        if not _VALUE.fullmatch(value.strip()):
            raise _invalid(f"the value of {key!r} must be 1-128 printable characters")
        if key in tags:
            raise _invalid(f"the tag {key!r} is given twice")
        tags[key] = value.strip()
        if len(tags) > MAX_TAGS:
            raise _invalid(f"at most {MAX_TAGS} tags")
    return tuple(sorted(tags.items()))
