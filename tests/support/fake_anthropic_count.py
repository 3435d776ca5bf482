"""Anthropic's `POST /v1/messages/count_tokens` for the fake (tests/support/fake_anthropic.py).

Checked as Anthropic checks it: a key and `anthropic-version` are required, `model` and
`messages` too, and a field only a Message takes (`max_tokens`, `stream`) is refused, so a
gateway that sends a count as a Message fails here. The count is deterministic and depends on
everything counted (messages, system, tools): a quarter of their JSON's length, plus 3 (the
`echo`-style names of FakeAnthropic's scripted failures answer as they do for Messages).
`context-managed` also answers `context_management`, as the real API does for its betas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from tests.support.fake_server import Received

if TYPE_CHECKING:
    from tests.support.fake_anthropic import FakeAnthropic

MESSAGE_ONLY = ("max_tokens", "stream", "temperature", "stop_sequences")
# A Messages tool definition the count tests send (its definition is counted too).
WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def fake_count(body: dict[str, Any]) -> int:
    """The fake's count: what a test computes to check the gateway relayed the request."""
    counted = {key: body.get(key) for key in ("messages", "system", "tools") if key in body}
    return len(orjson.dumps(counted)) // 4 + 3


async def count_tokens(fake: FakeAnthropic, request: web.Request) -> web.Response:
    from tests.support.fake_anthropic import error_response

    raw = await request.read()
    try:
        body: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    fake.received.append(Received(request.method, request.path, dict(request.headers), raw, body))
    bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if not (request.headers.get("x-api-key") or bearer):
        return error_response(401, "authentication_error", "x-api-key header is required")
    if not request.headers.get("anthropic-version"):
        return error_response(400, "invalid_request_error", "anthropic-version: header is required")
    if not isinstance(body, dict) or "model" not in body or "messages" not in body:
        return error_response(400, "invalid_request_error", "messages: Field required")
    for key in MESSAGE_ONLY:
        if key in body:
            return error_response(
                400, "invalid_request_error", f"{key}: Extra inputs are not permitted"
            )
    model = body["model"]
    fake.calls[f"count:{model}"] += 1
    failure = fake.failure(model)
    if failure is not None:
        return failure
    answer: dict[str, Any] = {"input_tokens": fake_count(body)}
    if model == "context-managed":
        answer["context_management"] = {"original_input_tokens": answer["input_tokens"] + 100}
    return web.Response(body=orjson.dumps(answer), content_type="application/json")
