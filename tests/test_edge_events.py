"""The edge's event splitter: whole events out, linear work, a cap (issue 10 item 7).

The edge's old splitter joined the pending bytes with each read and searched them all for the
last event end: O(n²) for a long event. The work is counted here, never timed.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edge.relay
from edge import events
from edge.events import EventSplitter, EventTooLarge

STREAM = b'data: {"a":1}\n\nevent: x\ndata: {}\n\n: ping\n\ndata: [DONE]\n\n'


def split(data: bytes, cuts: list[int], splitter: EventSplitter | None = None) -> list[bytes]:
    splitter = splitter or EventSplitter()
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    out = [splitter.feed(piece) for piece in pieces]
    return [part for part in [*out, splitter.rest()] if part]


@settings(max_examples=300)
@given(st.lists(st.integers(0, 10_000), max_size=10))
def test_any_split_gives_whole_events_only(cuts: list[int]) -> None:
    parts = split(STREAM, cuts)
    assert b"".join(parts) == STREAM
    assert all(part.endswith(b"\n\n") for part in parts)


def test_whole_events_pass_without_a_copy() -> None:
    chunk = b"data: {}\n\n"
    assert EventSplitter().feed(chunk) is chunk


def test_a_long_event_in_small_pieces_is_searched_once(monkeypatch: pytest.MonkeyPatch) -> None:
    searched = [0]
    real = events.event_end

    def counting(buffer: bytes | bytearray, start: int) -> int:
        searched[0] += len(buffer) - start
        return real(buffer, start)

    monkeypatch.setattr(events, "event_end", counting)
    size, piece = 20 * 1024 * 1024, b"x" * 1024
    splitter = EventSplitter()
    assert splitter.feed(b"data: ") == b""
    for _ in range(size // len(piece)):
        assert splitter.feed(piece) == b""
    assert len(splitter.feed(b"\n\n")) == size + 8
    assert searched[0] < 2 * size  # a search of the whole pending event per read: ~10,000x


def test_an_event_over_the_cap_is_refused() -> None:
    splitter = EventSplitter(max_event_bytes=65_536)
    splitter.feed(b"data: {}\n\ndata: " + b"x" * 60_000)
    with pytest.raises(EventTooLarge):
        splitter.feed(b"x" * 10_000)


class _Upstream:
    """The core's response as edge.relay reads it (shared.h1.Response): chunks as they came."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = pieces

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self._pieces:
            yield piece

    def close(self) -> None:
        pass


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_the_relay_ends_an_oversized_event_with_an_error_event(
    monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    monkeypatch.setattr(edge.relay, "EventSplitter", functools.partial(EventSplitter, 65_536))
    pieces = [b"data: {}\n\n", b"data: " + b"x" * 40_000, b"x" * 40_000]

    async def relay() -> list[bytes]:
        return [part async for part in edge.relay._stream(_Upstream(pieces), api)]  # type: ignore[arg-type]

    parts = asyncio.run(relay())
    assert parts[0] == b"data: {}\n\n" and len(parts) == 2
    error = orjson.loads(parts[1].split(b"data: ", 1)[1])
    if api == "anthropic":
        assert parts[1].startswith(b"event: error\n") and error["error"]["type"] == "api_error"
    else:
        assert error["error"]["code"] == "core_unavailable"
    assert "oversized event" in error["error"]["message"]
