"""A fault-injecting OpenAI-compatible upstream, for the reliability suite and the chaos test.

Each request is answered by a `Fault`, chosen in this order:
  1. the request's model name `fault/<kind>[/<arg>]` (e.g. `fault/status/503`, `fault/drip/0.5`);
  2. else, with probability `fault_rate`, a kind drawn from `mix` (the chaos test's mode);
  3. else `default` (a normal answer unless a test sets another).

Kinds (arg in brackets):
  ok                  a normal answer (streamed when the request streams)
  status [code]       that HTTP status with an OpenAI error body (429 adds Retry-After: 1)
  reset               the connection is closed before any response byte
  stall [s]           silence before the headers (default 30 s)
  stall-mid [s]       a stream: two chunks, then silence (default 30 s)
  cut                 a stream: two chunks, then the connection drops (no [DONE])
  garbage [first]     200, then bytes that are not the wire format (a non-JSON body; a stream
                      event whose data is not JSON, after two good chunks, or as the stream's
                      first event with `first`)
  malformed [first]   200 with well-formed JSON of the wrong shape (`"choices": 5`), complete
                      or as a stream chunk after two good chunks (first, with `first`)
  bigevent [mb]       a stream: a good first chunk, then one event of `mb` MB (default 16) on a
                      single line, then a normal end; not streaming, a normal answer
  drip [s]            a stream that sends one small chunk every `s` seconds (default 0.5),
                      forever: never idle, never done
  trickle [s]         a stream of ten "." chunks, one every `s` seconds (default 0.1), then a
                      normal end; not streaming, a normal answer after ten times `s`
  huge [mb]           a complete answer whose content is `mb` MB (default 50), or a stream of
                      that many MB of content chunks
  slow [s]            a normal answer after `s` seconds (default 1)

`calls` counts requests by kind; `active` is how many are being answered now; `received`
records every request (FakeServer); `left` records (kind, time.monotonic()) for each request whose
client closed its connection while the fake was waiting (stall, stall-mid, slow): what a test
reads to see that the gateway cancelled upstream work. Usage in every good answer: 12 prompt +
7 completion tokens (huge answers report their real size in completion tokens / 4 bytes).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tests.support.fake_server import FakeServer, Received

TEXT = "Hello from the fault injector."
KINDS = (
    "ok",
    "status",
    "reset",
    "stall",
    "stall-mid",
    "cut",
    "garbage",
    "malformed",
    "drip",
    "trickle",
    "huge",
    "slow",
    "bigevent",
)


@dataclass(frozen=True)
class Fault:
    kind: str
    arg: str | None = None

    @classmethod
    def parse(cls, model: str) -> Fault | None:
        """`fault/<kind>[/<arg>]` as a Fault; None for any other name."""
        parts = model.split("/")
        if len(parts) < 2 or parts[0] != "fault" or parts[1] not in KINDS:
            return None
        return cls(parts[1], parts[2] if len(parts) > 2 else None)

    def number(self, default: float) -> float:
        return float(self.arg) if self.arg else default


def _usage(completion: int = 7) -> dict[str, int]:
    return {"prompt_tokens": 12, "completion_tokens": completion, "total_tokens": 12 + completion}


def _completion(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fault",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(max(7, len(text) // 4)),
    }


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fault",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _event(payload: dict[str, Any] | bytes) -> bytes:
    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return b"data: " + data + b"\n\n"


_BAD_EVENTS = {
    "garbage": b"data: {{{ not json at all\n\n",
    "malformed": _event({"id": "x", "object": "chat.completion.chunk", "choices": 5}),
}


class FakeFaults(FakeServer):
    def __init__(
        self,
        default: Fault | None = None,
        fault_rate: float = 0.0,
        mix: tuple[Fault, ...] = (),
        seed: int | None = None,
    ) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/{tail:.*}", self.answer)
        super().__init__(app)
        self.default = default or Fault("ok")
        self.fault_rate = fault_rate
        self.mix = mix
        self.active = 0
        self.left: list[tuple[str, float]] = []
        self._rng = random.Random(seed)

    def choose(self, model: str) -> Fault:
        named = Fault.parse(model)
        if named is not None:
            return named
        if self.mix and self._rng.random() < self.fault_rate:
            return self._rng.choice(self.mix)
        return self.default

    async def answer(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: Any = orjson.loads(raw) if raw else None
        self.received.append(
            Received(request.method, request.path, dict(request.headers), raw, body)
        )
        model = str(body.get("model", "")) if isinstance(body, dict) else ""
        fault = self.choose(model)
        self.calls[fault.kind] += 1
        self.active += 1
        try:
            stream = isinstance(body, dict) and body.get("stream") is True
            return await self._serve(request, fault, model, stream)
        finally:
            self.active -= 1

    async def _serve(
        self, request: web.Request, fault: Fault, model: str, stream: bool
    ) -> web.StreamResponse:
        kind = fault.kind
        if kind == "status":
            return _error(int(fault.number(500)))
        if kind == "reset":
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        waits = fault.number(30 if kind == "stall" else 1)
        if kind == "trickle":  # a complete answer takes as long as the stream
            waits = 0.0 if stream else fault.number(0.1) * 10
        if kind in ("stall", "slow", "trickle") and not await self._wait(request, kind, waits):
            return web.Response()  # the client is gone: nobody to answer
        if kind == "huge":
            return await self._huge(request, model, stream, int(fault.number(50)))
        if not stream:
            return self._complete(kind, model)
        return await self._stream(request, fault, model)

    def _complete(self, kind: str, model: str) -> web.Response:
        if kind == "garbage":
            return web.Response(body=b"<html>not json", content_type="application/json")
        if kind == "malformed":
            return web.json_response({"id": "x", "object": "chat.completion", "choices": 5})
        return web.Response(
            body=orjson.dumps(_completion(model, TEXT)), content_type="application/json"
        )

    async def _stream(self, request: web.Request, fault: Fault, model: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        kind = fault.kind
        if kind in ("garbage", "malformed") and fault.arg == "first":
            await response.write(_BAD_EVENTS[kind])
            return response
        await response.write(_event(_chunk(model, {"role": "assistant", "content": ""})))
        if kind == "bigevent":
            size = int(fault.number(16) * 1024 * 1024)
            await response.write(_event(_chunk(model, {"content": "x" * size})))
        await response.write(_event(_chunk(model, {"content": "Hello"})))
        if kind == "stall-mid":
            await self._wait(request, kind, fault.number(30))
            return response
        if kind == "cut":
            assert request.transport is not None
            request.transport.abort()
            return response
        if kind in _BAD_EVENTS:
            await response.write(_BAD_EVENTS[kind])
        elif kind == "trickle":
            for _ in range(10):
                await asyncio.sleep(fault.number(0.1))
                await response.write(_event(_chunk(model, {"content": "."})))
        elif kind == "drip":
            while True:
                await asyncio.sleep(fault.number(0.5))
                await response.write(_event(_chunk(model, {"content": "."})))
        await response.write(_event(_chunk(model, {"content": " world"}, "stop")))
        await response.write(_event({**_chunk(model, {}), "choices": [], "usage": _usage()}))
        await response.write(b"data: [DONE]\n\n")
        return response

    async def _wait(self, request: web.Request, kind: str, seconds: float) -> bool:
        """Sleeps `seconds` unless the client closes the connection first (then False, and
        recorded in `left`)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (now := loop.time()) < end:
            transport = request.transport
            if transport is None or transport.is_closing():
                self.left.append((kind, time.monotonic()))
                return False
            await asyncio.sleep(min(0.02, end - now))
        return True

    async def _huge(
        self, request: web.Request, model: str, stream: bool, megabytes: int
    ) -> web.StreamResponse:
        text = "x" * (megabytes * 1024 * 1024)
        if not stream:
            return web.Response(
                body=orjson.dumps(_completion(model, text)), content_type="application/json"
            )
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        piece = "x" * 65536
        for _ in range(megabytes * 16):
            await response.write(_event(_chunk(model, {"content": piece})))
        await response.write(_event({**_chunk(model, {}, "stop")}))
        await response.write(b"data: [DONE]\n\n")
        return response


def _error(status: int) -> web.Response:
    body = {"error": {"message": f"injected {status}", "type": "server_error", "code": None}}
    headers = {"retry-after": "1"} if status == 429 else None
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )
