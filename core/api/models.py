"""GET /v1/models: the configured models and aliases the caller's token may use, in the list
format of the SDK that asks.

The OpenAI SDK gets OpenAI's list (`{"object": "list", "data": [{"id", "object", "created",
"owned_by"}]}`). A client that sends `anthropic-version` (the Anthropic SDK's `models.list`;
Claude Code's model picker, which lists a gateway's models) gets Anthropic's: `type`, `id`,
`display_name`, `created_at` per model, paged by `limit` (1-1000, default 20), `after_id` or
`before_id`, with `has_more`, `first_id` and `last_id`; its errors are in Anthropic's envelope.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from shared.errors import GatewayError, bad_request
from shared.http import JSON_MEDIA, error_response

if TYPE_CHECKING:
    from core.api.identity import Caller
    from core.app import CoreState, Handler

DEFAULT_LIMIT = 20
MAX_LIMIT = 1000


def models_endpoint(state: CoreState) -> Handler:
    created = state.registry.created
    created_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))

    async def models(request: Request, caller: Caller, body: bytes) -> Response:
        listed = [(name, owner) for name, owner in state.registry.listing() if caller.allows(name)]
        headers = {"x-request-id": caller.request_id}
        if "anthropic-version" not in request.headers:
            data = [
                {"id": name, "object": "model", "created": created, "owned_by": owner}
                for name, owner in listed
            ]
            return Response(
                orjson.dumps({"object": "list", "data": data}), 200, headers, JSON_MEDIA
            )
        try:
            page = anthropic_page([name for name, _ in listed], request.query_params, created_at)
        except GatewayError as error:
            return error_response(error, "anthropic", headers)
        return Response(orjson.dumps(page), 200, headers, JSON_MEDIA)

    return models


def anthropic_page(names: list[str], query: Mapping[str, str], created_at: str) -> dict[str, Any]:
    """One page of Anthropic's model list: `limit` models after `after_id` (or before
    `before_id`), in listing order."""
    limit = _limit(query.get("limit"))
    after, before = query.get("after_id"), query.get("before_id")
    if after is not None and before is not None:
        raise bad_request("after_id: cannot be combined with before_id", param="after_id")
    start, end = 0, len(names)
    if after is not None:
        start = _position(names, after, "after_id") + 1
    if before is not None:
        end = _position(names, before, "before_id")
        start = max(0, end - limit)
    shown = names[start : min(end, start + limit)]
    data = [
        {"type": "model", "id": name, "display_name": name, "created_at": created_at}
        for name in shown
    ]
    more = start > 0 if before is not None else start + len(shown) < end
    first, last = (shown[0], shown[-1]) if shown else (None, None)
    return {"data": data, "has_more": more, "first_id": first, "last_id": last}


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise bad_request(f"limit: must be an integer from 1 to {MAX_LIMIT}", param="limit")
    return int(raw)


def _position(names: list[str], model: str, param: str) -> int:
    try:
        return names.index(model)
    except ValueError:
        raise bad_request(f"{param}: no model '{model[:64]}' in the list", param=param) from None
