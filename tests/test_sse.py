"""The SSE decoder yields the same events however the bytes are split, in linear time, and
refuses an event over its cap."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.providers.adapters.base import ProviderError
from core.wire import sse
from core.wire.sse import SSEDecoder, encode_data, encode_event

STREAM = (
    b": ping\n\n"
    b'event: message_start\ndata: {"a": 1}\n\n'
    b"data: line one\ndata: line two\n\n"
    b"data:no-space\r\n\r\n"
    b"event: ping\r\ndata: {}\r\n\r\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    ("message_start", b'{"a": 1}'),
    (None, b"line one\nline two"),
    (None, b"no-space"),
    ("ping", b"{}"),
    (None, b"[DONE]"),
]


def decode(pieces: list[bytes]) -> list[tuple[str | None, bytes]]:
    decoder = SSEDecoder()
    events = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    events.extend(decoder.finish())
    return [(e.event, e.data) for e in events]


def test_whole_stream() -> None:
    assert decode([STREAM]) == EXPECTED


def test_byte_at_a_time() -> None:
    assert decode([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


@settings(max_examples=300)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    pieces = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    assert decode(pieces) == EXPECTED


def test_final_event_without_blank_line_is_flushed() -> None:
    assert decode([b"data: tail"]) == [(None, b"tail")]


def test_encoders_round_trip() -> None:
    assert decode([encode_data({"x": 1}), encode_event("error", {"y": 2})]) == [
        (None, b'{"x":1}'),
        ("error", b'{"y":2}'),
    ]


def _scanned_bytes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the bytes the decoder's scanning primitive is asked to look at."""
    scanned = [0]
    real = sse.line_end

    def counting(buffer: bytearray, start: int) -> tuple[int, int] | None:
        found = real(buffer, start)  # it looks at the bytes up to the line end, or all
        scanned[0] += (found[1] if found else len(buffer)) - start
        return found

    monkeypatch.setattr(sse, "line_end", counting)
    return scanned


def test_a_long_line_fed_in_small_pieces_is_scanned_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 10 item 7: re-scanning the pending line on every read made a 50 MB line cost 25 s
    of CPU. The work is counted, not timed: a 20 MB line in 1 KB pieces is scanned about once
    (a re-scan per read would be ~10,000 times the line)."""
    scanned = _scanned_bytes(monkeypatch)
    decoder = SSEDecoder(max_event_bytes=32 * 1024 * 1024)
    size, piece = 20 * 1024 * 1024, b"x" * 1024
    assert decoder.feed(b"data: ") == []
    for _ in range(size // len(piece)):
        assert decoder.feed(piece) == []
    [event] = decoder.feed(b"\n\n")
    assert len(event.data) == size
    assert scanned[0] < 2 * size


def test_many_events_in_one_read_are_scanned_once(monkeypatch: pytest.MonkeyPatch) -> None:
    scanned = _scanned_bytes(monkeypatch)
    stream = b"data: {}\n\n" * 100_000
    assert len(SSEDecoder().feed(stream)) == 100_000
    assert scanned[0] < 2 * len(stream)


def test_an_event_over_the_cap_is_an_invalid_upstream_response() -> None:
    for pieces in ([b"data: " + b"x" * 70_000], [b"data: " + b"x" * 1000] * 70):
        decoder = SSEDecoder(max_event_bytes=65_536)
        with pytest.raises(ProviderError) as info:
            for piece in pieces:
                decoder.feed(piece)
        assert info.value.status == 502 and "larger than 65536 bytes" in info.value.message


def test_the_cap_counts_every_data_line_of_one_event() -> None:
    decoder = SSEDecoder(max_event_bytes=65_536)
    line = b"data: " + b"x" * 1000 + b"\n"
    assert decoder.feed(line * 60) == []  # 60 KB of data lines, no blank line yet
    with pytest.raises(ProviderError):
        decoder.feed(line * 10)
    small = SSEDecoder(max_event_bytes=65_536)
    assert len(small.feed((line + b"\n") * 200)) == 200  # many events, each small: fine
