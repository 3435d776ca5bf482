"""The SSE decoder yields the same events however the bytes are split."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

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
