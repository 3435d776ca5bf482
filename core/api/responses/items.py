"""GET /v1/responses/{id}/input_items: the items a stored response was made from, as OpenAI
lists them (a `list` object of items, `first_id`, `last_id`, `has_more`; `limit` 1-100,
default 20; `order` asc|desc, default desc; `after` / `before` item-id cursors; `include`).

Which items: everything the model was given for that response, in conversation order: the
earlier turns reached through `previous_response_id` (their inputs and outputs) and then the
request's own input. That is the stored entry's items less the response's own output
(core.api.responses.store keeps history + input + output).

Every item has an id, as OpenAI's do: the request's own items are given one when the response
is stored (`with_ids`), so the ids stay the same from one page to the next and from one turn to
the next (a later turn's history holds the same items). Items are shown in OpenAI's item shape
(`listed`): a message's string content becomes its parts, and items get a `status`. The
tenant's own entry only: another tenant's id is the same 404 as one that never existed.
`include` is checked against OpenAI's values and otherwise changes nothing: the items are
listed whole (image URLs included; there are no search results or logprobs to add).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from core.api.identity import Caller
from core.api.responses.response import new_id
from core.api.responses.store import ResponseStore, not_found
from core.pipeline.exchange import json_response
from core.providers.adapters.base import JSON
from shared.errors import GatewayError

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
INCLUDABLE = frozenset(
    (
        "file_search_call.results",
        "web_search_call.results",
        "web_search_call.action.sources",
        "message.input_image.image_url",
        "computer_call_output.output.image_url",
        "code_interpreter_call.outputs",
        "reasoning.encrypted_content",
        "message.output_text.logprobs",
    )
)
_PREFIXES = {"message": "msg_", "function_call": "fc_", "function_call_output": "fco_"}
_PARAMS = ("after", "before", "limit", "order")


def with_ids(items: list[Any]) -> list[Any]:
    """The request's input items, each with an id (its own if it had one)."""
    out: list[Any] = []
    for item in items:
        if isinstance(item, dict) and not isinstance(item.get("id"), str):
            prefix = _PREFIXES.get(str(item.get("type", "message")), "item_")
            item = {**item, "id": new_id(prefix)}
        out.append(item)
    return out


def _parts(role: Any, content: Any) -> Any:
    """A message's content as parts (a string is one text part of the role's kind)."""
    if not isinstance(content, str):
        return content
    if role == "assistant":
        return [{"type": "output_text", "text": content, "annotations": []}]
    return [{"type": "input_text", "text": content}]


def listed(item: Any) -> Any:
    """One stored item in OpenAI's item shape."""
    if not isinstance(item, dict):
        return item
    kind = item.get("type", "message")
    shown = {**item, "type": kind}
    if kind == "message":
        shown["content"] = _parts(item.get("role"), item.get("content"))
    if kind in _PREFIXES:
        shown.setdefault("status", "completed")
    return shown


def _invalid(param: str, message: str) -> GatewayError:
    return GatewayError(400, f"{param}: {message}", param=param, code="invalid_value")


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if (
        not (value.isascii() and value.isdigit() and len(value) <= 3)
        or not 1 <= int(value) <= MAX_LIMIT
    ):
        raise _invalid("limit", f"must be an integer from 1 to {MAX_LIMIT}")
    return int(value)


def _include(request: Request) -> None:
    """`include` (`include[]` as the SDKs send arrays): OpenAI's values only."""
    for name in ("include", "include[]"):
        for value in request.query_params.getlist(name):
            if value not in INCLUDABLE:
                shown = value[:64].encode("unicode_escape").decode("ascii")
                raise _invalid("include", f"unknown value '{shown}'")


def _query(request: Request) -> dict[str, str | None]:
    """The paging parameters, each given at most once; a bad one is a 400 naming it."""
    query: dict[str, str | None] = {}
    for name in _PARAMS:
        values = request.query_params.getlist(name)
        if len(values) > 1:
            raise _invalid(name, "may be given only once")
        query[name] = values[0] if values else None
    if query["order"] not in (None, "asc", "desc"):
        raise _invalid("order", "must be 'asc' or 'desc'")
    if query["after"] is not None and query["before"] is not None:
        raise _invalid("before", "cannot be given with 'after'")
    _include(request)
    return query


def _position(items: list[Any], param: str, item_id: str) -> int:
    for k, item in enumerate(items):
        if isinstance(item, dict) and item.get("id") == item_id:
            return k
    shown = item_id[:64].encode("unicode_escape").decode("ascii")
    raise _invalid(param, f"no item with id '{shown}' among this response's input items")


def page(items: list[Any], query: dict[str, str | None]) -> JSON:
    """One page of `items` (oldest first) in the asked order, from the asked cursor."""
    ordered = items if query["order"] == "asc" else items[::-1]
    limit = _limit(query["limit"])
    after, before = query["after"], query["before"]
    if before is not None:
        end = _position(ordered, "before", before)
        start = max(0, end - limit)
        data, has_more = ordered[start:end], start > 0
    else:
        start = _position(ordered, "after", after) + 1 if after is not None else 0
        data, has_more = ordered[start : start + limit], start + limit < len(ordered)
    shown = [listed(item) for item in data]
    first, last = (shown[0], shown[-1]) if shown else ({}, {})
    return {
        "object": "list",
        "data": shown,
        "first_id": first.get("id") if isinstance(first, dict) else None,
        "last_id": last.get("id") if isinstance(last, dict) else None,
        "has_more": has_more,
    }


def input_of(entry: JSON) -> list[Any]:
    """The stored entry's input items: its items less the response's own output."""
    items, response = entry.get("items"), entry.get("response")
    if not isinstance(items, list) or not isinstance(response, dict):
        return []
    output = response.get("output")
    return items[: len(items) - len(output)] if isinstance(output, list) else items


def input_items_endpoint(responses: ResponseStore) -> Any:
    """GET /v1/responses/{response_id}/input_items, for the caller's tenant only. The query
    is checked first, so a bad parameter is a 400 whether or not the id exists."""

    async def items(request: Request, caller: Caller, body: bytes) -> Response:
        response_id = request.path_params["response_id"]
        query = _query(request)
        _limit(query["limit"])
        entry = await responses.load(caller.tenant, response_id)
        if entry is None or not isinstance(entry.get("response"), dict):
            raise not_found(response_id)
        answer = page(input_of(entry), query)
        return json_response(orjson.dumps(answer), {"x-request-id": caller.request_id})

    return items
