"""Signs hop credentials like the edge does, for tests that call a core replica directly."""

from __future__ import annotations

import os
import time

import orjson

from shared import hop
from tests.support import raw, sockets


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


def post(
    core_url: str, secret: str, body: dict[str, object], tenant: str = "acme"
) -> raw.RawResponse:
    """POSTs `body` to a core's /v1/chat/completions as the edge would, for `tenant`."""
    headers, data = signed(secret, body, tenant=tenant)
    return raw.post(f"{core_url}/v1/chat/completions", data, headers=headers)


def leave_after(
    core_port: int, secret: str, body: dict[str, object], seconds: float, tenant: str
) -> float:
    """Sends `body` to a core's /v1/chat/completions as the edge would, for `tenant`; closes
    the connection after `seconds` without reading anything; returns when (time.monotonic())."""
    headers, data = signed(secret, body, tenant=tenant)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = (
        "POST /v1/chat/completions HTTP/1.1\r\nhost: core\r\n"
        f"content-type: application/json\r\ncontent-length: {len(data)}\r\n{head}\r\n"
    )
    sock = sockets.connect(core_port)
    sock.sendall(request.encode() + data)
    time.sleep(seconds)
    sock.close()
    return time.monotonic()
