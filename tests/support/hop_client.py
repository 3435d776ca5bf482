"""Signs hop credentials like the edge does, for tests that call a core replica directly."""

from __future__ import annotations

import os
import time

import orjson

from shared import hop


def signed(
    secret: str | bytes,
    body: bytes | dict[str, object] | None,
    path: str = "/v1/chat/completions",
    method: str = "POST",
    tenant: str = "acme",
    tier: str = "default",
    models: str = "*",
    ttl_s: float = 600,
    now: float | None = None,
) -> tuple[dict[str, str], bytes]:
    """Headers for one direct call and the exact body bytes they are bound to."""
    data = orjson.dumps(body) if isinstance(body, dict) else (body or b"")
    key = hop.HopKey(secret.encode() if isinstance(secret, str) else secret)
    request_id = "req_" + os.urandom(12).hex()
    signed_at = time.time() if now is None else now
    identity = hop.HopIdentity(tenant, tier, models, int(signed_at + ttl_s))
    credential = hop.sign(key, identity, method, path, request_id, data, now=signed_at)
    return {hop.HOP_HEADER: credential, hop.REQUEST_ID_HEADER: request_id}, data
