"""A fake OpenAI-compatible upstream that speaks the real wire format.

Scripted by the requested model name:
  any name             -> a normal answer ("Hello from the fake upstream.")
  fail-429-then-ok     -> 429 with Retry-After on the first call, then normal
  fail-500 / fail-503  -> always that status with an OpenAI error body
  fail-401             -> 401 whose message quotes part of a key (must never reach tenants)
  always-429           -> 429 with Retry-After: 7 on every call
  quota                -> 429 insufficient_quota (a spend limit, not a rate limit)
  context              -> 400 context_length_exceeded
  bad-param            -> 400 naming a param
  error-after-200      -> stream: two chunks, then an in-stream error object
  cut-stream           -> stream: two chunks, then the connection drops without [DONE]
  slow-first-byte      -> waits 0.3 s before answering
  slow-<ms>            -> waits <ms> milliseconds before sending headers (timeouts by kind)
  tool-calls           -> two parallel tool calls, streamed interleaved
  tool-loop            -> the same two calls until the last message is a tool result, then
                          "Tool results: <the tool messages' contents joined by ' | '>"
  json                 -> JSON_ANSWER as the content when response_format is json_schema,
                          else the normal answer
  cache                -> the normal answer with usage 1200 prompt tokens (1024 cached) / 7
  deepseek-chat        -> the normal answer with DeepSeek's usage shape: DEEPSEEK_USAGE, whose
                          cache reads are prompt_cache_hit_tokens (no prompt_tokens_details)
  crlf                 -> stream framed with \\r\\n line endings
  fail-529             -> 529 overloaded
  stall-headers        -> waits 5 s before sending headers (first-byte timeouts)
  stall-midstream      -> stream: three chunks, then silence for 5 s (idle timeouts)
  once-500/<tag>       -> 500 on the first call for that exact name, then normal
  once-429/<tag>       -> 429 with Retry-After: 1 on the first call, then normal
  keyed/<tag>          -> 401 unless the key is sk-good
Scripted by content, whatever the model: a user message whose content is exactly POISON gets a
500 (a request the upstream chokes on, e.g. a malformed image: the tenant's fault, not the
target's).
Streams split every event mid-bytes across writes and send `: ping` comments, as real hosts do.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp import web

from tests.support import fake_prompt_cache as cache
from tests.support.fake_openai_responses import ResponsesEndpoint
from tests.support.fake_server import FakeServer, Received

TEXT = "Hello from the fake upstream."
POISON = "poison-500"
JSON_ANSWER = {"answer": "forty-two", "confidence": 0.9}
CACHED_PROMPT, CACHED = 1200, 1024
# DeepSeek's usage: prompt_tokens = cache hits + misses, no prompt_tokens_details.
DEEPSEEK_USAGE = {
    "prompt_tokens": 1800,
    "completion_tokens": 120,
    "total_tokens": 1920,
    "prompt_cache_hit_tokens": 1536,
    "prompt_cache_miss_tokens": 264,
}
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63f8cfc0f01f0005000200"
    "e221bc330000000049454e44ae426082"
)


def _error(
    status: int,
    message: str,
    type_: str,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def _usage(prompt: int = 12, completion: int = 7, cached: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


TOOL_CALLS = [
    {
        "id": "call_weather_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    },
    {
        "id": "call_stock_2",
        "type": "function",
        "function": {"name": "get_stock_price", "arguments": '{"ticker": "ACME"}'},
    },
]


def _answer(model: str, body: dict[str, Any]) -> tuple[bool, str, dict[str, Any]]:
    """(answer with tool calls?, the text otherwise, usage) for a scripted model."""
    messages = body.get("messages") or []
    results = []
    for message in reversed(messages):  # the trailing tool messages, in order
        if not isinstance(message, dict) or message.get("role") != "tool":
            break
        results.insert(0, str(message.get("content")))
    if model == "tool-calls" or (model == "tool-loop" and not results):
        return True, "", _usage()
    if model == "tool-loop":
        return False, "Tool results: " + " | ".join(results), _usage()
    format_type = (body.get("response_format") or {}).get("type")
    if model == "json" and format_type == "json_schema":
        return False, orjson.dumps(JSON_ANSWER).decode(), _usage()
    if model == "cache":
        return False, TEXT, _usage(CACHED_PROMPT, 7, CACHED)
    if model == "deepseek-chat":
        return False, TEXT, dict(DEEPSEEK_USAGE)
    return False, TEXT, _usage()


def _completion(
    model: str, tools: bool, text: str = TEXT, usage: dict[str, Any] | None = None
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if tools else text,
        "refusal": None,
    }
    if tools:
        message["tool_calls"] = TOOL_CALLS
    return {
        "id": "chatcmpl-fake123",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if tools else "stop",
            }
        ],
        "usage": usage or _usage(),
    }


def _stream_chunks(
    model: str,
    include_usage: bool,
    tools: bool,
    text: str = TEXT,
    usage: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    base = {
        "id": "chatcmpl-fake123",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
    }
    if include_usage:
        base["usage"] = None

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            **base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    chunks = [chunk({"role": "assistant", "content": None if tools else "", "refusal": None})]
    if tools:
        first, second = TOOL_CALLS
        for index, call in enumerate(TOOL_CALLS):
            chunks.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": call["id"],
                                "type": "function",
                                "function": {"name": call["function"]["name"], "arguments": ""},
                            }
                        ]
                    }
                )
            )
        halves = [
            (c["function"]["arguments"][:6], c["function"]["arguments"][6:])
            for c in (first, second)
        ]
        for part in (0, 1):
            for index in (0, 1):  # interleaved: fragments of both calls alternate
                chunks.append(
                    chunk(
                        {
                            "tool_calls": [
                                {"index": index, "function": {"arguments": halves[index][part]}}
                            ]
                        }
                    )
                )
        chunks.append(chunk({}, "tool_calls"))
    else:
        for i, word in enumerate(text.split(" ")):  # TEXT: "Hello", " from", " the", ...
            chunks.append(chunk({"content": word if i == 0 else " " + word}))
        chunks.append(chunk({}, "stop"))
    if include_usage:
        chunks.append({**base, "choices": [], "usage": usage or _usage()})
    return chunks


class FakeOpenAI(FakeServer):
    def __init__(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/img.png", self.image)
        responses = ResponsesEndpoint(self, TEXT)
        app.router.add_post("/v1/responses", responses.handle)
        app.router.add_post("/v1/responses/input_tokens", responses.count)
        super().__init__(app)
        self.prompt_cache = cache.PromptCache()

    def reset(self) -> None:
        super().reset()
        self.prompt_cache.reset()

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    async def image(self, request: web.Request) -> web.Response:
        """A remote image for tests of the core's image inlining."""
        return web.Response(body=PNG, content_type="image/png")

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": "gpt-fake", "object": "model", "created": 0, "owned_by": "fake"}],
            }
        )

    async def chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = orjson.loads(raw)
        self.received.append(
            Received(request.method, request.path, dict(request.headers), raw, body)
        )
        model = body.get("model", "")
        self.calls[model] += 1
        stream = bool(body.get("stream"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if model == "fail-429-then-ok" and self.calls[model] == 1:
            return _error(
                429,
                "Rate limit reached for requests",
                "requests",
                "rate_limit_exceeded",
                headers={"retry-after": "0"},
            )
        if any(
            isinstance(m, dict) and m.get("content") == POISON for m in body.get("messages") or ()
        ):
            return _error(500, "The server had an error processing your image.", "server_error")
        if model == "stall-headers":
            await asyncio.sleep(5)
        if model.startswith("once-500/") and self.calls[model] == 1:
            return _error(500, "The server had an error.", "server_error")
        if model.startswith("once-429/") and self.calls[model] == 1:
            return _error(
                429,
                "Rate limit reached",
                "requests",
                "rate_limit_exceeded",
                headers={"retry-after": "1"},
            )
        if model.startswith("keyed/") and request.headers.get("authorization") != "Bearer sk-good":
            return _error(
                401,
                "Incorrect API key provided: sk-bad.",
                "invalid_request_error",
                "invalid_api_key",
            )
        if model == "fail-529":
            return _error(529, "Overloaded", "server_error")
        if model == "always-429":
            return _error(
                429,
                "Rate limit reached for requests",
                "requests",
                "rate_limit_exceeded",
                headers={"retry-after": "7"},
            )
        if model in ("fail-500", "fail-503"):
            status = int(model[-3:])
            return _error(
                status, "The server had an error while processing your request.", "server_error"
            )
        if model == "fail-401":
            return _error(
                401,
                "Incorrect API key provided: sk-live-SECRETabcd1234.",
                "invalid_request_error",
                "invalid_api_key",
            )
        if model == "quota":
            return _error(
                429, "You exceeded your current quota.", "insufficient_quota", "insufficient_quota"
            )
        if model == "context":
            return _error(
                400,
                "This model's maximum context length is 8192 tokens.",
                "invalid_request_error",
                "context_length_exceeded",
                "messages",
            )
        if model == "bad-param":
            return _error(
                400,
                "Invalid value for 'temperature': must be <= 2.",
                "invalid_request_error",
                "invalid_value",
                "temperature",
            )
        if model == "slow-first-byte":
            await asyncio.sleep(0.3)
        elif model.startswith("slow-") and model[5:].isdigit():
            await asyncio.sleep(int(model[5:]) / 1000)
        if cache.has_cache_control(body):  # OpenAI refuses Anthropic's field
            return _error(400, cache.REFUSED, "invalid_request_error", None, "messages")
        tools, text, usage = _answer(model, body)
        if "prompt_cache_key" in body and model != "cache":  # OpenAI's own prefix caching
            usage = cache.openai_usage(self.prompt_cache, body, usage)
        if not stream:
            return web.Response(
                body=orjson.dumps(_completion(model, tools, text, usage)),
                content_type="application/json",
            )
        return await self._stream(request, model, include_usage, tools, text, usage)

    async def _stream(
        self,
        request: web.Request,
        model: str,
        include_usage: bool,
        tools: bool,
        text: str = TEXT,
        usage: dict[str, Any] | None = None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        newline = b"\r\n" if model == "crlf" else b"\n"
        chunks = _stream_chunks(model, include_usage, tools, text, usage)
        if model in ("error-after-200", "cut-stream", "stall-midstream"):
            chunks = chunks[:3]
        await response.write(b": ping" + newline + newline)
        for chunk in chunks:
            event = b"data: " + orjson.dumps(chunk) + newline + newline
            cut = len(event) // 2
            await response.write(event[:cut])  # a write boundary in the middle of an event
            await response.write(event[cut:])
        if model == "error-after-200":
            error = {
                "error": {
                    "message": "The server had an error while processing your request.",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            }
            await response.write(b"data: " + orjson.dumps(error) + newline + newline)
            return response
        if model == "stall-midstream":
            await asyncio.sleep(5)
            return response
        if model == "cut-stream":
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write(b"data: [DONE]" + newline + newline)
        await response.write_eof()
        return response
