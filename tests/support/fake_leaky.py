"""A fake upstream whose error messages leak: it echoes the caller's API key and internal
addresses, in the OpenAI, Anthropic and Gemini wire formats, as some proxies in front of
self-hosted models do. The gateway must never show those words to a tenant.

Scripted by the requested model name:
  leak-400        -> 400 invalid-request error whose message quotes the key and internal hosts
  leak-500        -> 500 server error, same message
  leak-midstream  -> stream: a first text chunk, then an in-stream error event with that message
  (any other)     -> a normal answer
"""

from __future__ import annotations

import orjson
from aiohttp import web

from tests.support.fake_server import FakeServer, Received

INTERNAL_HOST = "inference-7.gpu.internal.corp"
INTERNAL_ADDR = "10.20.30.40:8443"


def leak_message(key: str) -> str:
    return (
        f"upstream {INTERNAL_HOST} ({INTERNAL_ADDR}) rejected the request sent with key {key}; "
        f"see http://{INTERNAL_HOST}/debug?api_key={key}"
    )


def _key(request: web.Request) -> str:
    for header in ("x-api-key", "x-goog-api-key"):
        if request.headers.get(header):
            return request.headers[header]
    return request.headers.get("authorization", "").removeprefix("Bearer ")


def _sse(payload: object, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(payload) + b"\n\n"


class FakeLeaky(FakeServer):
    def __init__(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.openai)
        app.router.add_post("/v1/messages", self.anthropic)
        app.router.add_post("/v1beta/models/{call}", self.gemini)
        super().__init__(app)

    def _record(self, request: web.Request, raw: bytes, model: str) -> None:
        body = orjson.loads(raw)
        self.received.append(
            Received(request.method, request.path, dict(request.headers), raw, body)
        )
        self.calls[model] += 1

    async def _stream(self, request: web.Request, events: list[bytes]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(event)
        await response.write_eof()
        return response

    async def openai(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = orjson.loads(raw)
        model = body["model"]
        self._record(request, raw, model)
        error = {"error": {"message": leak_message(_key(request)), "type": "x", "code": None}}
        if model in ("leak-400", "leak-500"):
            status = int(model[-3:])
            return web.json_response(error, status=status)
        chunk = {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}],
        }
        if model == "leak-midstream":
            return await self._stream(request, [_sse(chunk), _sse(error)])
        done = {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        if body.get("stream"):
            return await self._stream(request, [_sse(chunk), _sse(done), b"data: [DONE]\n\n"])
        message = {"role": "assistant", "content": "Hi"}
        answer = {
            **chunk,
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        }
        answer["usage"] = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
        return web.json_response(answer)

    async def anthropic(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        model = orjson.loads(raw)["model"]
        self._record(request, raw, model)
        message = leak_message(_key(request))
        if model in ("leak-400", "leak-500"):
            kind = "invalid_request_error" if model == "leak-400" else "api_error"
            body = {"type": "error", "error": {"type": kind, "message": message}}
            return web.json_response(body, status=int(model[-3:]))
        start = {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 3, "output_tokens": 0},
            },
        }
        block = {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        }
        delta = {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Hi"},
        }
        error = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
        return await self._stream(
            request,
            [
                _sse(start, "message_start"),
                _sse(block, "content_block_start"),
                _sse(delta, "content_block_delta"),
                _sse(error, "error"),
            ],
        )

    async def gemini(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        model = request.match_info["call"].split(":", 1)[0]
        self._record(request, raw, model)
        message = leak_message(_key(request))
        if model in ("leak-400", "leak-500"):
            status = int(model[-3:])
            grpc = "INVALID_ARGUMENT" if status == 400 else "INTERNAL"
            error = {"error": {"code": status, "message": message, "status": grpc}}
            return web.json_response(error, status=status)
        chunk = {
            "candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}]}, "index": 0}],
            "modelVersion": model,
        }
        error = {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}
        return await self._stream(request, [_sse(chunk), _sse(error)])
