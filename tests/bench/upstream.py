"""A fake OpenAI upstream built for speed, so the benchmark never measures the fake itself.

Raw asyncio protocol + httptools parser on uvloop; every response is pre-built bytes. The mode is
picked by the requested model name:

  fast         answer at once
  slow50       answer after 50 ms
  stream20     (stream) 20 content chunks written back to back
  stream64x20  (stream) 64 content chunks, 20 ms apart

Any mode serves both `stream: true` and `false` (a non-stream answer waits as long as the stream
would take). Stream chunks are real `chat.completion.chunk` objects; a final `choices: []` chunk
with usage is sent only when `stream_options.include_usage` is true, as OpenAI does. GET /stats
reports how many chat requests arrived and how many asked for usage, so the harness can check
that a gateway really forwarded them.

Run: python -m tests.bench.upstream --port N
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import socket
import time
from dataclasses import dataclass
from typing import Any, cast

import httptools
import orjson


@dataclass(frozen=True)
class Mode:
    first_delay_s: float  # before the first byte of the answer
    chunks: int  # content chunks in a stream (and words in a non-stream answer)
    gap_s: float  # between stream content chunks


MODES: dict[str, Mode] = {
    "fast": Mode(0.0, 5, 0.0),
    "slow50": Mode(0.05, 5, 0.0),
    "stream20": Mode(0.0, 20, 0.0),
    "stream64x20": Mode(0.0, 64, 0.02),
}
PROMPT_TOKENS = 12
_CREATED = int(time.time())
_ID = "chatcmpl-bench0000000000000000000000"


def _usage(completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": completion_tokens,
        "total_tokens": PROMPT_TOKENS + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def words(n: int) -> list[str]:
    """The answer's tokens; clients check they all arrived, in order."""
    return [("tok" if i == 0 else " tok") + str(i) for i in range(n)]


def _response(status: str, content_type: str, body: bytes, keep_alive: bool) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\n"
        f"content-length: {len(body)}\r\n"
        f"connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode() + body


def completion_body(model: str, mode: Mode) -> bytes:
    return orjson.dumps(
        {
            "id": _ID,
            "object": "chat.completion",
            "created": _CREATED,
            "model": model,
            "system_fingerprint": "fp_bench",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "".join(words(mode.chunks)),
                        "refusal": None,
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(mode.chunks),
        }
    )


def stream_events(model: str, mode: Mode, include_usage: bool) -> list[bytes]:
    """SSE events, each framed as one HTTP chunk: role+first token, the rest, finish, [usage]."""
    base: dict[str, Any] = {
        "id": _ID,
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": model,
        "system_fingerprint": "fp_bench",
    }
    if include_usage:
        base["usage"] = None

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**base, "choices": [choice]}

    tokens = words(mode.chunks)
    payloads = [chunk({"role": "assistant", "content": tokens[0], "refusal": None})]
    payloads += [chunk({"content": token}) for token in tokens[1:]]
    payloads.append(chunk({}, "stop"))
    if include_usage:
        payloads.append({**base, "choices": [], "usage": _usage(mode.chunks)})
    events = [b"data: " + orjson.dumps(p) + b"\n\n" for p in payloads]
    events.append(b"data: [DONE]\n\n")
    return [b"%x\r\n%s\r\n" % (len(e), e) for e in events]


_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n"
)
_CHUNKED_END = b"0\r\n\r\n"


class Stats:
    chat_requests = 0
    include_usage_requests = 0


class _Cache:
    """Pre-built responses per (model, keep-alive) and (model, include_usage)."""

    def __init__(self) -> None:
        self.plain: dict[tuple[str, bool], bytes] = {}
        self.streams: dict[tuple[str, bool], list[bytes]] = {}
        for name, mode in MODES.items():
            body = completion_body(name, mode)
            for keep in (True, False):
                self.plain[name, keep] = _response("200 OK", "application/json", body, keep)
            for usage in (True, False):
                self.streams[name, usage] = stream_events(name, mode, usage)


CACHE = _Cache()


def _error(status: str, message: str, code: str, keep_alive: bool) -> bytes:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None}}
    body["error"]["code"] = code
    return _response(status, "application/json", orjson.dumps(body), keep_alive)


class UpstreamProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection; requests are answered in order (pipelining-safe)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []
        self.queue: collections.deque[tuple[bytes, bytes, bytes, bool]] = collections.deque()
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses but have the same API.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:  # explicit, not left to the loop: no Nagle delay on chunks
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(_error("400 Bad Request", "bad HTTP", "bad_http", False))
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        keep = self.parser.should_keep_alive()
        self.queue.append((method, self.url, b"".join(self.body), keep))
        if not self.busy:
            self._next()

    def _next(self) -> None:
        while self.queue and not self.busy and self.transport is not None:
            method, url, body, keep = self.queue.popleft()
            self._handle(method, url.split(b"?", 1)[0], body, keep)

    def _write(self, data: bytes, keep: bool) -> None:
        if self.transport is None:
            return
        self.transport.write(data)
        if not keep:
            self.transport.close()

    def _handle(self, method: bytes, path: bytes, body: bytes, keep: bool) -> None:
        if method == b"GET" and path in (b"/healthz", b"/stats"):
            stats = {
                "chat_requests": Stats.chat_requests,
                "include_usage_requests": Stats.include_usage_requests,
            }
            self._write(_response("200 OK", "application/json", orjson.dumps(stats), keep), keep)
            return
        if method == b"GET" and path in (b"/v1/models", b"/models"):
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "bench"} for m in MODES]
            payload = orjson.dumps({"object": "list", "data": data})
            self._write(_response("200 OK", "application/json", payload, keep), keep)
            return
        if method != b"POST" or path not in (b"/v1/chat/completions", b"/chat/completions"):
            self._write(_error("404 Not Found", "no such route", "not_found", keep), keep)
            return
        try:
            request = orjson.loads(body)
            model = request["model"]
            stream = bool(request.get("stream"))
            usage = bool((request.get("stream_options") or {}).get("include_usage"))
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            self._write(_error("400 Bad Request", "bad JSON body", "invalid_json", keep), keep)
            return
        mode = MODES.get(model) if isinstance(model, str) else None
        if mode is None:
            msg = f"The model `{model}` does not exist"
            self._write(_error("404 Not Found", msg, "model_not_found", keep), keep)
            return
        Stats.chat_requests += 1
        Stats.include_usage_requests += usage
        if not stream and mode.first_delay_s == 0 and mode.gap_s == 0:
            self._write(CACHE.plain[model, keep], keep)
            return
        self.busy = True
        asyncio.get_running_loop().create_task(self._slow(model, mode, stream, usage, keep))

    async def _slow(self, model: str, mode: Mode, stream: bool, usage: bool, keep: bool) -> None:
        try:
            if mode.first_delay_s:
                await asyncio.sleep(mode.first_delay_s)
            if not stream:
                if mode.gap_s:
                    await asyncio.sleep(mode.gap_s * (mode.chunks - 1))
                self._write(CACHE.plain[model, keep], keep)
                return
            await self._stream(CACHE.streams[model, usage], mode, keep)
        finally:
            self.busy = False
            self._next()

    async def _stream(self, events: list[bytes], mode: Mode, keep: bool) -> None:
        transport = self.transport
        if transport is None:
            return
        connection = b"connection: keep-alive\r\n\r\n" if keep else b"connection: close\r\n\r\n"
        transport.write(_STREAM_HEAD + connection + events[0])
        # events: first content, content[1:], finish, [usage], [DONE]
        last_content = mode.chunks - 1
        for index, event in enumerate(events[1:], start=1):
            if mode.gap_s and index <= last_content:
                await asyncio.sleep(mode.gap_s)
            if transport.is_closing():
                return
            transport.write(event)
        self._write(_CHUNKED_END, keep)


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        UpstreamProtocol, host, port, backlog=2048, reuse_address=True
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # still correct, only slower
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
