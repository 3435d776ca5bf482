"""`POST /admin/route/explain`, on the admin listener only (core.api.listeners): which routing
rule a request would match, its route's candidates with their cost, latency estimate, error
rate and score, and why any would be skipped (core.pipeline.explain).

Body: `{"tenant": "acme", "tier": "default", "tags": {"team": "search"}, "api": "chat",
"headers": {"x-priority": "high"}, "request": {...the API's request body...}}`; only `tenant`
and `request` are required. Like /metrics it is the operator's (it shows every tenant's
routing and budget levels), so it is served where /metrics is and nowhere else; nothing it
does sends, reserves or claims anything. Bad input is a 400 naming the field (`tenant`,
`request.messages`, ...), never a 5xx.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from core.api.tags import HEADER, parse_tags, with_header
from core.ledger.record import Tags
from core.pipeline.explain import PATHS, ExplainAsk, RouteExplainer
from shared.errors import GatewayError
from shared.http import error_response, read_body

FIELDS = frozenset({"tenant", "tier", "tags", "api", "headers", "request"})
MAX_HEADERS = 64


def _invalid(param: str, why: str) -> GatewayError:
    return GatewayError(400, f"{param}: {why}", param=param, code="invalid_request")


def _text(body: dict[str, Any], name: str, default: str | None = None) -> str:
    value = body.get(name, default)
    if not isinstance(value, str) or not value.strip() or len(value) > 256:
        raise _invalid(name, "expected a non-empty string of at most 256 characters")
    return value


def _pairs(body: dict[str, Any], name: str) -> list[tuple[str, str]]:
    value = body.get(name, {})
    if not isinstance(value, dict) or len(value) > MAX_HEADERS:
        raise _invalid(name, f"expected an object of at most {MAX_HEADERS} string values")
    pairs = []
    for key, item in value.items():
        if not isinstance(item, str) or not key.isascii() or not item.isascii():
            raise _invalid(f"{name}.{key}", "expected an ASCII string")
        pairs.append((key.lower(), item))
    return pairs


def _tags(body: dict[str, Any], headers: list[tuple[str, str]]) -> Tags:
    """The token's tags (`tags`) and the x-interlock-tags header's, merged as for a request."""
    given = ",".join(f"{k}={v}" for k, v in _pairs(body, "tags"))
    try:
        token = parse_tags(given)
    except GatewayError as error:
        raise _invalid("tags", error.message.removeprefix(f"{HEADER}: ")) from None
    try:
        return with_header(token, dict(headers).get(HEADER))
    except GatewayError as error:
        raise _invalid(f"headers.{HEADER}", error.message.removeprefix(f"{HEADER}: ")) from None


def parse_ask(raw: bytes) -> ExplainAsk:
    """The explain request, or a 400 naming its field."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _invalid("body", "expected a JSON object") from None
    if not isinstance(body, dict):
        raise _invalid("body", "expected a JSON object")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise _invalid(unknown[0], f"unknown field; expected {', '.join(sorted(FIELDS))}")
    api = _text(body, "api", "chat")
    if api not in PATHS:
        raise _invalid("api", f"expected one of {', '.join(sorted(PATHS))}")
    request = body.get("request")
    if not isinstance(request, dict):
        raise _invalid("request", "expected the API's request body (a JSON object)")
    headers = _pairs(body, "headers")
    return ExplainAsk(
        api,
        _text(body, "tenant"),
        _text(body, "tier", "default"),
        _tags(body, headers),
        tuple(headers),
        orjson.dumps(request),
    )


def explain_endpoint(
    explainer: RouteExplainer, max_body: int
) -> Callable[[Request], Awaitable[Response]]:
    """The admin route's handler."""

    async def endpoint(http: Request) -> Response:
        try:
            ask = parse_ask(await read_body(http, max_body))
        except GatewayError as error:
            return error_response(error, "openai")
        try:
            explanation = await explainer.explain(ask)
        except GatewayError as error:
            return error_response(_named(error), "openai")
        return Response(orjson.dumps(explanation.to_json()), media_type="application/json")

    return endpoint


def _named(error: GatewayError) -> GatewayError:
    """The pipeline's errors name the request's own fields: here they sit under `request`.
    A request the gateway would refuse is a bad explain request: always a 4xx."""
    param = f"request.{error.param}" if error.param else "request"
    status = error.status if 400 <= error.status < 500 else 400
    return GatewayError(status, error.message, param=param, code=error.code)
