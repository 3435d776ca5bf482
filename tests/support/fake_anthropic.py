"""A fake Anthropic Messages API (POST /v1/messages) that speaks the real wire format.

Requests are checked the way Anthropic checks them, so a translation bug fails loudly here
rather than on the real API: a request without a key (`x-api-key`, or `Authorization: Bearer`,
which the official SDK sends since 2.x) is a 401 authentication_error, one without
`anthropic-version` a 400 (as the real API answers), and `model`, `max_tokens` and `messages`
are required; roles must be user/assistant, text blocks non-empty, and every tool_use must be
answered by tool_result blocks at the start of the next user turn.

Scripted by the requested model name (any other name answers normally):
  (any name)            -> text "Hello from the fake Anthropic upstream." (stop end_turn)
  echo                  -> text repeating the last user text block
  tool-use              -> a text block, then two tool_use blocks (get_weather, get_stock_price),
                           stop tool_use; once the last user turn holds tool_result blocks it
                           answers "Tool results: <contents joined by ' | '>" instead
  thinking              -> a thinking block (with signature), then text; any model also thinks
                           when the request enables `thinking`
  cache                 -> usage with cache_read_input_tokens and cache_creation_input_tokens
  json                  -> text JSON_ANSWER (as JSON) when the request asks for structured output
                           (output_config.format of type json_schema), else the normal text
  fail-429-then-ok      -> 429 rate_limit_error with retry-after: 0 on the first call, then normal
  rate-limit            -> always 429 rate_limit_error with retry-after: 7
  overloaded            -> always 529 overloaded_error
  fail-500              -> always 500 api_error
  fail-401              -> 401 authentication_error whose message quotes part of a key
  credit                -> 400 invalid_request_error about a too-low credit balance
  context               -> 400 invalid_request_error "prompt is too long: ..."
  too-large             -> 413 request_too_large
  error-after-200       -> stream: starts a text block, then an `event: error` overloaded_error
  cut-stream            -> stream: starts a text block, then drops the connection
  slow-first-byte       -> waits 0.3 s before answering
POST /v1/messages/count_tokens answers too (tests/support/fake_anthropic_count.py), with the
same scripted failures.
A small max_tokens truncates the text to that many words with stop_reason max_tokens.
Streams send `event: ping` frames and split every event across two writes, as the real API's
proxies do. Every request is recorded in `received` (see FakeServer).
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import orjson
from aiohttp import web

from tests.support.fake_anthropic_count import count_tokens
from tests.support.fake_prompt_cache import PromptCache, anthropic_usage, breakpoint_problem
from tests.support.fake_server import FakeServer, Received

TEXT = "Hello from the fake Anthropic upstream."
JSON_ANSWER = {"answer": "forty-two", "confidence": 0.9}
THINKING = "The user wants a greeting. I will answer briefly."
SIGNATURE = "EqQBCkYIARgCIkDfakeSignatureForTestsOnly0123456789abcdef=="
TOOL_TEXT = "I'll look up both for you."
TOOL_USES = [
    {"id": "toolu_01WeatherAAAA", "name": "get_weather", "input": {"city": "Paris"}},
    {"id": "toolu_02StockBBBBBB", "name": "get_stock_price", "input": {"ticker": "ACME"}},
]
MODEL_SUFFIX = "-20250929"
INPUT_TOKENS = 25
CACHE_READ = 1111
CACHE_CREATION = 418
REQUEST_ID = "req_fake_anthropic_0001"


def error_response(
    status: int, type_: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"type": "error", "error": {"type": type_, "message": message}, "request_id": REQUEST_ID}
    return web.Response(
        status=status,
        body=orjson.dumps(body),
        content_type="application/json",
        headers={"request-id": REQUEST_ID, **(headers or {})},
    )


class RequestInvalid(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _check_body(body: Any) -> None:
    """The subset of Anthropic's request validation that catches translation bugs."""
    if not isinstance(body, dict):
        raise RequestInvalid("body: Input should be a valid dictionary")
    for field in ("model", "max_tokens", "messages"):
        if field not in body:
            raise RequestInvalid(f"{field}: Field required")
    if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
        raise RequestInvalid("max_tokens: Input should be a valid integer greater than 0")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise RequestInvalid("messages: Input should be a valid list")
    pending: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            raise RequestInvalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        content = message["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if pending:
            results = []
            for block in blocks:
                if block.get("type") != "tool_result":
                    break
                results.append(block["tool_use_id"])
            if role != "user" or not pending <= set(results):
                raise RequestInvalid(
                    f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                    "immediately after. Each `tool_use` block must have a corresponding "
                    "`tool_result` block in the next message."
                )
            pending = set()
        for j, block in enumerate(blocks):
            kind = block.get("type")
            if kind == "text" and not block.get("text"):
                raise RequestInvalid(f"messages.{i}.content.{j}.text: must be non-empty")
            if kind == "tool_use":
                if role != "assistant" or not isinstance(block.get("input"), dict):
                    raise RequestInvalid(f"messages.{i}.content.{j}: invalid tool_use block")
                pending.add(block["id"])
            if kind == "tool_result" and role != "user":
                raise RequestInvalid(
                    f"messages.{i}.content.{j}: tool_result must be in a user turn"
                )
    problem = breakpoint_problem(body)
    if problem is not None:
        raise RequestInvalid(problem)


def _last_user_blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    for message in reversed(body["messages"]):
        if message["role"] == "user":
            content = message["content"]
            return [{"type": "text", "text": content}] if isinstance(content, str) else content
    return []


def _result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _script(model: str, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """The content blocks to answer with, and the stop reason."""
    thinking = model == "thinking" or (body.get("thinking") or {}).get("type") == "enabled"
    blocks: list[dict[str, Any]] = []
    if thinking:
        blocks.append({"type": "thinking", "thinking": THINKING, "signature": SIGNATURE})
    last = _last_user_blocks(body)
    results = [b for b in last if b.get("type") == "tool_result"]
    if model == "tool-use" and not results:
        blocks.append({"type": "text", "text": TOOL_TEXT})
        blocks.extend({"type": "tool_use", **use} for use in TOOL_USES)
        return blocks, "tool_use"
    if results:
        text = "Tool results: " + " | ".join(_result_text(b) for b in results)
    elif model == "echo":
        text = " ".join(b["text"] for b in last if b.get("type") == "text") or "(nothing)"
    elif model == "json" and (
        ((body.get("output_config") or {}).get("format") or {}).get("type") == "json_schema"
    ):
        text = orjson.dumps(JSON_ANSWER).decode()
    else:
        text = TEXT
    words = text.split(" ")
    limit = body["max_tokens"]
    stop = "end_turn"
    if limit < len(words):
        words, stop = words[:limit], "max_tokens"
    blocks.append({"type": "text", "text": " ".join(words)})
    return blocks, stop


def _output_tokens(blocks: list[dict[str, Any]]) -> int:
    total = 0
    for block in blocks:
        if block["type"] == "text":
            total += len(block["text"].split(" "))
        elif block["type"] == "thinking":
            total += len(block["thinking"].split(" "))
        else:
            total += 10
    return total


def _usage(model: str, output_tokens: int) -> dict[str, Any]:
    cached = model == "cache"
    return {
        "input_tokens": 3 if cached else INPUT_TOKENS,
        "cache_creation_input_tokens": CACHE_CREATION if cached else 0,
        "cache_read_input_tokens": CACHE_READ if cached else 0,
        "cache_creation": {
            "ephemeral_5m_input_tokens": CACHE_CREATION if cached else 0,
            "ephemeral_1h_input_tokens": 0,
        },
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def message(model: str, body: dict[str, Any]) -> dict[str, Any]:
    """The complete (non-streaming) Message for a request, as the real API shapes it."""
    blocks, stop = _script(model, body)
    return {
        "id": "msg_01FakeAnthropic" + model.replace("-", "")[:12],
        "type": "message",
        "role": "assistant",
        "model": model + MODEL_SUFFIX,
        "content": blocks,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": _usage(model, _output_tokens(blocks)),
    }


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def stream_events(final: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The SSE events (name, payload) that stream `final`, block by block."""
    start_usage = {**final["usage"], "output_tokens": 1}
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {**final, "content": [], "stop_reason": None, "usage": start_usage},
            },
        )
    ]
    for index, block in enumerate(final["content"]):
        kind = block["type"]
        deltas: list[dict[str, Any]]
        start: dict[str, Any]
        if kind == "text":
            start = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in _pieces(block["text"], 7)]
        elif kind == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [
                {"type": "thinking_delta", "thinking": p} for p in _pieces(block["thinking"], 9)
            ]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            arguments = orjson.dumps(block["input"]).decode()
            deltas = [{"type": "input_json_delta", "partial_json": ""}]
            deltas += [
                {"type": "input_json_delta", "partial_json": p} for p in _pieces(arguments, 5)
            ]
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
        )
        if index == 0:
            events.append(("ping", {"type": "ping"}))
        events.extend(
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
            for d in deltas
        )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    usage = final["usage"]
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": final["stop_reason"], "stop_sequence": None},
                "usage": {
                    "input_tokens": usage["input_tokens"],
                    "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
                    "cache_read_input_tokens": usage["cache_read_input_tokens"],
                    "output_tokens": usage["output_tokens"],
                },
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def encode(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class FakeAnthropic(FakeServer):
    """`url` is the base URL (what the Anthropic SDK and the adapter call `base_url`)."""

    def __init__(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/messages/count_tokens", partial(count_tokens, self))
        super().__init__(app)
        self.prompt_cache = PromptCache()

    def reset(self) -> None:
        super().reset()
        self.prompt_cache.reset()

    async def messages(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        self.received.append(
            Received(request.method, request.path, dict(request.headers), raw, body)
        )
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not (request.headers.get("x-api-key") or bearer):
            return error_response(401, "authentication_error", "x-api-key header is required")
        if not request.headers.get("anthropic-version"):
            return error_response(
                400, "invalid_request_error", "anthropic-version: header is required"
            )
        try:
            _check_body(body)
        except RequestInvalid as exc:
            return error_response(400, "invalid_request_error", exc.message)
        model = body["model"]
        self.calls[model] += 1
        failure = self.failure(model)
        if failure is not None:
            return failure
        if model == "slow-first-byte":
            await asyncio.sleep(0.3)
        final = message(model, body)
        if model != "cache":  # a marked prefix above the minimum: the prompt cache answers
            final["usage"] = anthropic_usage(self.prompt_cache, body, final["usage"])
        if not body.get("stream"):
            return web.Response(
                body=orjson.dumps(final),
                content_type="application/json",
                headers={"request-id": REQUEST_ID},
            )
        return await self._stream(request, model, final)

    def failure(self, model: str) -> web.Response | None:
        if model == "fail-429-then-ok" and self.calls[model] == 1:
            return error_response(
                429,
                "rate_limit_error",
                "Number of requests has exceeded your rate limit.",
                {"retry-after": "0"},
            )
        if model == "rate-limit":
            return error_response(
                429,
                "rate_limit_error",
                "Number of requests has exceeded your rate limit.",
                {"retry-after": "7"},
            )
        if model == "overloaded":
            return error_response(529, "overloaded_error", "Overloaded")
        if model == "fail-500":
            return error_response(500, "api_error", "Internal server error")
        if model == "fail-401":
            return error_response(
                401, "authentication_error", "invalid x-api-key: sk-ant-api03-SECRETabcd1234"
            )
        if model == "credit":
            return error_response(
                400,
                "invalid_request_error",
                "Your credit balance is too low to access the Anthropic API. "
                "Please go to Plans & Billing to upgrade or purchase credits.",
            )
        if model == "context":
            return error_response(
                400, "invalid_request_error", "prompt is too long: 215337 tokens > 200000 maximum"
            )
        if model == "too-large":
            return error_response(413, "request_too_large", "Request exceeds the maximum size")
        return None

    async def _stream(
        self, request: web.Request, model: str, final: dict[str, Any]
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
                "request-id": REQUEST_ID,
            }
        )
        await response.prepare(request)
        events = stream_events(final)
        if model in ("error-after-200", "cut-stream"):
            events = events[:4]  # message_start, block start, ping, first delta
        for name, payload in events:
            frame = encode(name, payload)
            cut = len(frame) // 2
            await response.write(frame[:cut])  # a write boundary in the middle of an event
            await response.write(frame[cut:])
        if model == "error-after-200":
            error = {
                "type": "error",
                "error": {"details": None, "type": "overloaded_error", "message": "Overloaded"},
            }
            await response.write(encode("error", error))
            await response.write_eof()
            return response
        if model == "cut-stream":
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write_eof()
        return response
