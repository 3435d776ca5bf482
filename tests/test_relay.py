"""The stream relay (core.api.relay): whatever fails after the first byte, the client gets an
error event in its API's format and the request is accounted, never a broken connection.

Issue 10 item 3: a TypeError from a parser escaped the relay, so the core broke the connection
(which the edge's other requests share) and the usage line said `ok`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from core.api.messages.stream import AnthropicStreamEncoder
from core.api.relay import OpenAIStreamEncoder, StreamEncoder, relay
from core.providers import parsing
from core.providers.adapters.base import JSON

CHUNK = {"id": "c", "choices": [{"index": 0, "delta": {"content": "Hello"}}]}


async def _failing(exc: Exception, after: list[JSON]) -> AsyncIterator[JSON]:
    for chunk in after:
        yield chunk
    raise exc


def _run(chunks: AsyncIterator[JSON], encoder: StreamEncoder) -> tuple[list[bytes], list[Any]]:
    ended: list[Any] = []

    async def collect() -> list[bytes]:
        sink = lambda usage, outcome, error: ended.append((usage, outcome))  # noqa: E731
        return [part async for part in relay(None, chunks, encoder, sink, prompt_estimate=12)]

    return asyncio.run(collect()), ended


@pytest.mark.parametrize("exc", [TypeError("'int' object is not iterable"), KeyError("x")])
def test_any_exception_mid_stream_ends_with_an_openai_error_event(exc: Exception) -> None:
    before = parsing.crash_counts().get("-", 0)
    parts, ended = _run(_failing(exc, [CHUNK]), OpenAIStreamEncoder(False))
    assert b"Hello" in parts[0]
    error = orjson.loads(parts[-1].removeprefix(b"data: "))["error"]
    assert error["message"] == "upstream returned an invalid response"
    assert error["type"] == "upstream_error"
    [(usage, outcome)] = ended
    assert outcome == "cut:transient"
    assert usage["estimated"] and usage["prompt_tokens"] == 12 and usage["completion_tokens"] > 0
    assert parsing.crash_counts()["-"] == before + 1  # counted for /metrics


def test_an_encoder_crash_ends_with_an_anthropic_error_event() -> None:
    class Breaking(AnthropicStreamEncoder):
        def chunk(self, chunk: JSON) -> bytes | None:
            if chunk.get("id") == "boom":
                raise AttributeError("'int' object has no attribute 'get'")
            return super().chunk(chunk)

    async def chunks() -> AsyncIterator[JSON]:
        yield CHUNK
        yield {"id": "boom"}

    parts, ended = _run(chunks(), Breaking("msg_1", "m"))
    assert parts[-1].startswith(b"event: error\ndata: ")
    assert b"message_stop" not in b"".join(parts)
    assert [outcome for _, outcome in ended] == ["cut:transient"]


def test_a_usage_that_is_not_an_object_is_never_accounted() -> None:
    async def chunks() -> AsyncIterator[JSON]:
        yield {**CHUNK, "usage": "12 tokens"}

    _, ended = _run(chunks(), OpenAIStreamEncoder(True))
    [(usage, outcome)] = ended
    assert outcome == "ok" and usage["estimated"]
