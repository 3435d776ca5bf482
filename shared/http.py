"""Starlette helpers both tiers use: capped body reads and JSON error responses."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from shared.errors import Api, GatewayError, anthropic_error_body, openai_error_body

log = logging.getLogger("interlock.http")

JSON_MEDIA = "application/json"
HEADERS_KEY = "interlock.headers"  # the scope's entry for header_map's result


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing early (Content-Length) or as soon as the cap is passed."""
    headers = request.scope.get(HEADERS_KEY)  # header_map's, when it ran (both tiers' hot path)
    declared = (headers or request.headers).get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()) or len(declared) > 20:
            raise GatewayError(400, "invalid Content-Length header", code="invalid_header")
        if int(declared) > limit:
            raise GatewayError(
                413, f"request body exceeds the {limit} byte limit", code="request_too_large"
            )
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise GatewayError(
                413, f"request body exceeds the {limit} byte limit", code="request_too_large"
            )
        parts.append(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def error_response(
    error: GatewayError, api: Api, headers: dict[str, str] | None = None
) -> Response:
    merged = {**error.headers, **(headers or {})}
    return Response(
        error.body_for(api), status_code=error.status, media_type=JSON_MEDIA, headers=merged
    )


def api_for_path(path: str) -> Api:
    return "anthropic" if path.startswith("/v1/messages") else "openai"


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 etc., in the envelope of the API the path belongs to."""
    assert isinstance(exc, HTTPException)
    api = api_for_path(request.url.path)
    message = {404: "no such endpoint", 405: "method not allowed for this endpoint"}.get(
        exc.status_code, str(exc.detail)
    )
    body = (
        anthropic_error_body(exc.status_code, message)
        if api == "anthropic"
        else openai_error_body(
            exc.status_code, message, code="not_found" if exc.status_code == 404 else None
        )
    )
    return Response(body, status_code=exc.status_code, media_type=JSON_MEDIA, headers=exc.headers)


async def unhandled_exception_handler(request: Request, exc: Exception) -> Response:
    """Last resort: log the traceback for operators, show the client only a clean 500.

    The response closes the connection. Starlette re-raises the exception once this response
    is sent and uvicorn then closes the socket; without `connection: close` the client (the
    edge's pool) would keep the connection as reusable and send the next request, of any
    tenant, into a socket that is being torn down."""
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    api = api_for_path(request.url.path)
    error = GatewayError(500, "internal gateway error", code="internal_error")
    return Response(
        error.body_for(api),
        status_code=500,
        media_type=JSON_MEDIA,
        headers={"connection": "close"},
    )


async def client_disconnect_handler(request: Request, exc: Exception) -> Response:
    """The client left (or the server's body deadline answered it with a 408) while the app
    was reading the body: nothing can be sent any more, and it is not a server error."""
    api = api_for_path(request.url.path)
    error = GatewayError(408, "the request body did not arrive", code="timeout")
    return Response(error.body_for(api), status_code=408, media_type=JSON_MEDIA)


EXCEPTION_HANDLERS = {
    HTTPException: http_exception_handler,
    ClientDisconnect: client_disconnect_handler,
    Exception: unhandled_exception_handler,
}


def header_map(request: Request) -> dict[str, str]:
    """All request headers in one pass (names are already lower-case in ASGI), kept on the
    scope for read_body. Starlette's Headers.get rescans the raw list on every lookup; the hot
    path looks up several. A repeated header keeps its last value (the servers refuse a
    repeated Content-Length)."""
    headers: dict[str, str] | None = request.scope.get(HEADERS_KEY)
    if headers is None:
        headers = request.scope[HEADERS_KEY] = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in request.scope["headers"]
        }
    return headers
