"""OpenAI's Responses API (POST /v1/responses) for the fakes that speak it: FakeOpenAI, and
FakeAzure at /openai/v1/responses. Written from OpenAI's API reference, independently of the
gateway's encoder, so a passthrough bug shows here.

POST /v1/responses/input_tokens is answered too (`count`), with only its own parameters.
Checks what the real API checks that matters to the gateway: the fake's key (when given),
`model` and `input` required, and
a `previous_response_id` is refused as unknown (404), since the upstream never saw the
gateway's ids: the gateway must inline the history instead. Scripted by model name:
  (any name)        -> one message with `text`; usage 12 in / 7 out
  tool-loop, tool-calls -> two function_call items (get_weather, get_stock_price) until the
                       input holds function_call_output items, then "Tool results: <outputs>"
  fail-500          -> 500 server_error
  cut-stream        -> stream: one text delta, then the connection drops
With `include: ["reasoning.encrypted_content"]` a reasoning item with encrypted content comes
first and 3 output tokens are reasoning. Streams split every event across two writes.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from aiohttp import web

from tests.support.fake_server import FakeServer, Received

CALLS = (
    ("call_weather_1", "get_weather", '{"city": "Paris"}'),
    ("call_stock_2", "get_stock_price", '{"ticker": "ACME"}'),
)
ENCRYPTED = "gAAAAA-fake-encrypted-reasoning"
_ids = itertools.count(1)


def _error(status: int, message: str, type_: str, code: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return web.json_response(body, status=status)


def _outputs(body: dict[str, Any]) -> list[str]:
    items = body.get("input")
    if not isinstance(items, list):
        return []
    return [
        str(i.get("output"))
        for i in items
        if isinstance(i, dict) and i.get("type") == "function_call_output"
    ]


def response(body: dict[str, Any], text: str) -> dict[str, Any]:
    """The complete response object the real API answers with."""
    n = next(_ids)
    model = str(body["model"])
    output: list[dict[str, Any]] = []
    reasoning = "reasoning.encrypted_content" in (body.get("include") or ())
    if reasoning:
        output.append(
            {
                "id": f"rs_fake{n}",
                "type": "reasoning",
                "summary": [],
                "encrypted_content": ENCRYPTED,
            }
        )
    results = _outputs(body)
    if model in ("tool-loop", "tool-calls") and not results:
        for k, (call_id, name, arguments) in enumerate(CALLS):
            output.append(
                {
                    "id": f"fc_fake{n}_{k}",
                    "type": "function_call",
                    "status": "completed",
                    "call_id": call_id,
                    "name": name,
                    "arguments": arguments,
                }
            )
    else:
        shown = "Tool results: " + " | ".join(results) if results else text
        output.append(
            {
                "id": f"msg_fake{n}",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": shown, "annotations": []}],
            }
        )
    return {
        "id": f"resp_fake{n}",
        "object": "response",
        "created_at": 1700000000,
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "model": model + "-2025-01-01",
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools", []),
        "usage": {
            "input_tokens": 12,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 7,
            "output_tokens_details": {"reasoning_tokens": 3 if reasoning else 0},
            "total_tokens": 19,
        },
    }


def events(final: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The stream for a final response, in the order the real API sends it."""
    opening = {**final, "status": "in_progress", "output": [], "usage": None}
    yield {"type": "response.created", "response": opening}
    yield {"type": "response.in_progress", "response": opening}
    for index, item in enumerate(final["output"]):
        where = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            text = item["content"][0]["text"]
            yield {
                "type": "response.output_item.added",
                "output_index": index,
                "item": {**item, "status": "in_progress", "content": []},
            }
            empty = {"type": "output_text", "text": "", "annotations": []}
            yield {
                "type": "response.content_part.added",
                **where,
                "content_index": 0,
                "part": empty,
            }
            for piece in text.split(" "):
                delta = piece if piece == text.split(" ")[0] else " " + piece
                yield {
                    "type": "response.output_text.delta",
                    **where,
                    "content_index": 0,
                    "delta": delta,
                }
            yield {"type": "response.output_text.done", **where, "content_index": 0, "text": text}
            part = item["content"][0]
            yield {"type": "response.content_part.done", **where, "content_index": 0, "part": part}
        elif item["type"] == "function_call":
            yield {
                "type": "response.output_item.added",
                "output_index": index,
                "item": {**item, "status": "in_progress", "arguments": ""},
            }
            args = item["arguments"]
            yield {"type": "response.function_call_arguments.delta", **where, "delta": args}
            yield {"type": "response.function_call_arguments.done", **where, "arguments": args}
        else:
            yield {"type": "response.output_item.added", "output_index": index, "item": item}
        yield {"type": "response.output_item.done", "output_index": index, "item": item}
    yield {"type": "response.completed", "response": final}


# The parameters of POST /v1/responses/input_tokens.
COUNT_PARAMS = {
    "conversation",
    "input",
    "instructions",
    "model",
    "parallel_tool_calls",
    "previous_response_id",
    "reasoning",
    "text",
    "tool_choice",
    "tools",
    "truncation",
}


def counted(body: dict[str, Any]) -> int:
    """The fake's count of a Responses request's input."""
    parts = {key: body[key] for key in ("input", "instructions", "tools") if key in body}
    return len(orjson.dumps(parts)) // 4 + 1


class ResponsesEndpoint:
    """The handler, recording into `server.received` like the fake's other routes."""

    def __init__(
        self,
        server: FakeServer,
        text: str,
        auth: Callable[[web.Request], web.Response | None] | None = None,
    ) -> None:
        self.server = server
        self.text = text
        self.auth = auth  # the fake's own key check (Azure's api-key), None to accept any

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = orjson.loads(raw)
        self.server.received.append(
            Received(request.method, request.path, dict(request.headers), raw, body)
        )
        model = body.get("model")
        self.server.calls[str(model)] += 1
        denied = self.auth(request) if self.auth is not None else None
        if denied is not None:
            return denied
        if not isinstance(model, str) or body.get("input") is None:
            return _error(400, "Missing required parameter: 'input'.", "invalid_request_error")
        if body.get("previous_response_id") is not None:
            message = f"Previous response with id '{body['previous_response_id']}' not found."
            return _error(404, message, "invalid_request_error", "previous_response_not_found")
        if model == "fail-500":
            return _error(500, "The server had an error.", "server_error")
        final = response(body, self.text)
        if not body.get("stream"):
            return web.json_response(final)
        return await self._stream(request, final, cut=model == "cut-stream")

    async def count(self, request: web.Request) -> web.Response:
        """POST /v1/responses/input_tokens: only its own parameters; a quarter of the length
        of what is counted (input, instructions, tools), so a test can tell what was sent."""
        raw = await request.read()
        body = orjson.loads(raw)
        self.server.received.append(
            Received(request.method, request.path, dict(request.headers), raw, body)
        )
        denied = self.auth(request) if self.auth is not None else None
        if denied is not None:
            return denied
        unknown = sorted(set(body) - COUNT_PARAMS)
        if unknown:
            return _error(400, f"Unknown parameter: '{unknown[0]}'.", "invalid_request_error")
        if body.get("previous_response_id") is not None:
            message = f"Previous response with id '{body['previous_response_id']}' not found."
            return _error(404, message, "invalid_request_error", "previous_response_not_found")
        return web.json_response({"object": "response.input_tokens", "input_tokens": counted(body)})

    async def _stream(
        self, request: web.Request, final: dict[str, Any], cut: bool
    ) -> web.StreamResponse:
        out = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await out.prepare(request)
        for sequence, event in enumerate(events(final)):
            event = {**event, "sequence_number": sequence}
            frame = f"event: {event['type']}\ndata: ".encode() + orjson.dumps(event) + b"\n\n"
            half = len(frame) // 2
            await out.write(frame[:half])
            await asyncio.sleep(0)
            await out.write(frame[half:])
            if cut and event["type"] == "response.output_text.delta":
                request.transport.close()  # type: ignore[union-attr]
                return out
        await out.write_eof()
        return out
