"""The dashboard's page through the edge: GET /dashboard/<file> relayed from a core of the
default pool (the core serves the files: core.dashboard.routes). The files hold no data, so
no token is asked for here; the page's data calls (/v1/usage, /v1/dashboard/*) go through the
edge's usual token check and hop signing. Only plain file names are relayed (no path, no query
string), each answer is capped, and a core that fails is a JSON 502, as for any relay.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from shared.errors import GatewayError
from shared.h1 import Client, H1Error
from shared.http import error_response

if TYPE_CHECKING:
    from edge.app import EdgeState

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_FILE_BYTES = 1 << 20  # the largest file (uPlot) is about 50 KB
TIMEOUT_S = 10.0
_KEPT_HEADERS = (
    "content-type",
    "content-security-policy",
    "x-content-type-options",
    "referrer-policy",
    "cache-control",
)


def _missing() -> Response:
    return error_response(GatewayError(404, "not found", code="not_found"), "openai")


async def relay_static(state: EdgeState, request: Request) -> Response:
    if request.url.path == "/dashboard":  # relative, never built from the client's Host
        return Response(status_code=308, headers={"location": "dashboard/"})
    name = request.path_params.get("name", "")
    if name and not _NAME.fullmatch(name):
        return _missing()
    client = state.client
    urls = state.replicas.choose(state.router.urls(state.router.pool_for(None, "")))
    for url in urls:
        if client is None:
            break
        try:
            async with asyncio.timeout(TIMEOUT_S):
                return await _fetch(client, f"{url}/dashboard/{name}")
        except (H1Error, TimeoutError):  # BodyTooLarge: larger than a dashboard file may be
            state.replicas.failed(url)
    error = GatewayError(502, "the gateway core is unavailable", code="core_unavailable")
    return error_response(error, "openai")


async def _fetch(client: Client, url: str) -> Response:
    """One file, read whole under the cap (redirects are never followed: shared.h1 has none)."""
    answer = await client.request("GET", url, {})
    body = await answer.read(MAX_FILE_BYTES)
    if answer.status != 200:
        return _missing()
    headers = {k: answer.headers[k] for k in _KEPT_HEADERS if k in answer.headers}
    return Response(body, headers=headers)
