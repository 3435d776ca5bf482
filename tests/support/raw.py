"""Raw HTTP over loopback with the stdlib, for asserting exact status, headers and bytes."""

from __future__ import annotations

import http.client
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


def request(
    method: str,
    url: str,
    body: bytes | dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> RawResponse:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1", parts.port, timeout=timeout
    )
    payload = orjson.dumps(body) if isinstance(body, dict) else body
    all_headers = {"content-type": "application/json", **(headers or {})}
    try:
        connection.request(
            method, parts.path + (f"?{parts.query}" if parts.query else ""), payload, all_headers
        )
        response = connection.getresponse()
        data = response.read()  # http.client also reassembles chunked streams
        return RawResponse(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        connection.close()


def post(
    url: str,
    body: bytes | dict[str, Any] | None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> RawResponse:
    merged = dict(headers or {})
    if token is not None:
        merged["authorization"] = f"Bearer {token}"
    return request("POST", url, body, merged)
