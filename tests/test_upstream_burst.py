"""A stream whose upstream writes every event at once (a whole answer back to back, a burst
after a pause): its first chunk leaves the relay before the rest of the burst is decoded."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import orjson
import pytest

from core.providers.adapters.base import Target
from core.providers.adapters.openai_compat import OpenAICompatAdapter
from core.providers.transport import UpstreamBody
from core.providers.upstream import HttpUpstream
from core.wire.sse import DONE, SSEDecoder
from shared.config import ProviderConfig
from tests.support.providers import provider_of

KEY = "sk-burst-test-key-0123456789"
PROVIDER = ProviderConfig("p", "openai", None, (KEY,), {}, None, False)
TARGET = Target(provider_of(PROVIDER), "m", PROVIDER.api_keys[0])


def event(content: str, **delta: Any) -> bytes:
    chunk = {
        "id": "chatcmpl-burst",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {**delta, "content": content}, "finish_reason": None}],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


FIRST = event("t0", role="assistant")
BURST = FIRST + b"".join(event(f"t{n}") for n in range(1, 20)) + DONE


class Burst:
    """An upstream body whose first read is the whole stream."""

    def __init__(self, data: bytes) -> None:
        self.reads = [data]

    async def read(self) -> bytes:
        return self.reads.pop(0) if self.reads else b""

    def release(self) -> None:
        pass


class Recording(SSEDecoder):
    """The SSE decoder, noting what it was fed."""

    fed: list[bytes] = []

    def feed(self, chunk: bytes) -> list[Any]:
        Recording.fed.append(bytes(chunk))
        return super().feed(chunk)


def test_the_first_chunk_leaves_before_the_rest_of_a_burst_is_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    Recording.fed = []
    monkeypatch.setattr(OpenAICompatAdapter, "decoder", lambda self, limit=0: Recording())
    upstream = TARGET.provider.upstream
    assert isinstance(upstream, HttpUpstream)
    parser = upstream.adapter.stream_parser({}, TARGET)

    async def run() -> tuple[Any, list[bytes], list[Any]]:
        chunks = upstream.relay(cast(UpstreamBody, Burst(BURST)), parser, TARGET)
        first = await anext(chunks)
        fed_by_then = list(Recording.fed)
        return first, fed_by_then, [chunk async for chunk in chunks]

    first, fed_by_then, rest = asyncio.run(run())
    assert first["choices"][0]["delta"]["content"] == "t0"
    assert fed_by_then == [FIRST]  # the other 19 events were not decoded yet
    contents = [c["choices"][0]["delta"].get("content") for c in rest if c.get("choices")]
    assert contents[:19] == [f"t{n}" for n in range(1, 20)]  # and none was lost
    assert b"".join(Recording.fed) == BURST
