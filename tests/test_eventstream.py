"""The AWS event-stream decoder: any byte split gives the same messages, corruption is caught.

botocore's own decoder is the oracle for what a frame means, and also checks that the
test-side encoder writes frames exactly as AWS does.
"""

from __future__ import annotations

import uuid

import pytest
from botocore.eventstream import EventStreamBuffer
from hypothesis import given, settings
from hypothesis import strategies as st

from core.providers.adapters.base import ProviderError, StreamEvent
from core.wire.eventstream import EventStreamDecoder, parse_headers
from shared.errors import FailureClass
from tests.support import eventstream_encode as es

_names = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20
)
_header = st.one_of(
    st.tuples(_names, st.just(es.BOOL_TRUE), st.just(True)),
    st.tuples(_names, st.just(es.BOOL_FALSE), st.just(False)),
    st.tuples(_names, st.just(es.BYTE), st.integers(-128, 127)),
    st.tuples(_names, st.just(es.SHORT), st.integers(-(2**15), 2**15 - 1)),
    st.tuples(_names, st.just(es.INT), st.integers(-(2**31), 2**31 - 1)),
    st.tuples(_names, st.just(es.LONG), st.integers(-(2**63), 2**63 - 1)),
    st.tuples(_names, st.just(es.BYTES), st.binary(max_size=40)),
    st.tuples(_names, st.just(es.STRING), st.text(max_size=40)),
    st.tuples(_names, st.just(es.TIMESTAMP), st.integers(0, 2**62)),
    st.tuples(_names, st.just(es.UUID), st.uuids()),
)
# Header names are unique within a message (botocore rejects duplicates outright).
_message = st.tuples(
    st.lists(_header, max_size=6, unique_by=lambda h: h[0]), st.binary(max_size=300)
)


def decode_in_pieces(data: bytes, cuts: list[int]) -> list[StreamEvent]:
    decoder = EventStreamDecoder()
    events: list[StreamEvent] = []
    start = 0
    for cut in sorted(set(cuts)):
        events += decoder.feed(data[start:cut])
        start = cut
    events += decoder.feed(data[start:])
    events += decoder.finish()
    return events


def expected_headers(headers: es.TypedHeaders) -> dict[str, str]:
    return {name: value for name, kind, value in headers if kind == es.STRING}


@settings(max_examples=150, deadline=None)
@given(messages=st.lists(_message, min_size=1, max_size=5), data=st.data())
def test_any_byte_split_gives_the_same_messages(
    messages: list[tuple[es.TypedHeaders, bytes]], data: st.DataObject
) -> None:
    stream = b"".join(es.encode_message(h, p) for h, p in messages)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    events = decode_in_pieces(stream, cuts)
    assert [e.data for e in events] == [p for _, p in messages]
    assert [dict(e.headers) for e in events] == [expected_headers(h) for h, _ in messages]
    byte_at_a_time = decode_in_pieces(stream, list(range(len(stream))))
    assert byte_at_a_time == events


@settings(max_examples=100, deadline=None)
@given(message=_message)
def test_typed_headers_agree_with_botocore(message: tuple[es.TypedHeaders, bytes]) -> None:
    headers, payload = message
    frame = es.encode_message(headers, payload)
    oracle = EventStreamBuffer()
    oracle.add_data(frame)
    [reference] = list(oracle)
    assert reference.payload == payload
    header_bytes = frame[12 : 12 + int.from_bytes(frame[4:8], "big")]
    ours = parse_headers(header_bytes)
    for name, value in reference.headers.items():
        theirs = value
        if isinstance(ours[name], uuid.UUID):
            theirs = uuid.UUID(bytes=value)
        elif hasattr(value, "timestamp"):  # botocore turns timestamps into datetimes
            theirs = int(value.timestamp() * 1000)
        assert ours[name] == theirs, name


@settings(max_examples=200, deadline=None)
@given(message=_message, data=st.data())
def test_any_corrupted_byte_is_detected(
    message: tuple[es.TypedHeaders, bytes], data: st.DataObject
) -> None:
    frame = bytearray(es.encode_message(*message))
    position = data.draw(st.integers(0, len(frame) - 1))
    frame[position] ^= data.draw(st.integers(1, 255))
    decoder = EventStreamDecoder()
    with pytest.raises(ProviderError) as info:
        decoder.feed(bytes(frame))
        decoder.finish()  # a corrupted length can only leave an incomplete frame behind
    assert info.value.failure_class is FailureClass.TRANSIENT
    assert info.value.status == 502


def test_message_checksum_mismatch_is_reported_once_the_frame_is_whole() -> None:
    frame = bytearray(es.event_frame("contentBlockDelta", {"delta": {"text": "hi"}}))
    frame[-1] ^= 0xFF
    decoder = EventStreamDecoder()
    assert decoder.feed(bytes(frame[:-1])) == []
    with pytest.raises(ProviderError, match="message checksum mismatch"):
        decoder.feed(bytes(frame[-1:]))


def test_prelude_checksum_is_checked_before_waiting_for_a_huge_length() -> None:
    frame = bytearray(es.event_frame("messageStart", {"role": "assistant"}))
    frame[0] = 0x7F  # claims a ~2 GB message; without the prelude CRC we would wait forever
    with pytest.raises(ProviderError, match="prelude checksum mismatch"):
        EventStreamDecoder().feed(bytes(frame[:12]))


def test_event_names_and_message_types() -> None:
    frames = (
        es.event_frame("messageStop", {"stopReason": "end_turn"})
        + es.exception_frame("throttlingException", "slow down")
        + es.encode_message(
            [
                (":message-type", es.STRING, "error"),
                (":error-code", es.STRING, "InternalFailure"),
                (":error-message", es.STRING, "boom"),
            ],
            b"",
        )
    )
    stop, exception, error = EventStreamDecoder().feed(frames)
    assert (stop.event, stop.headers[":message-type"]) == ("messageStop", "event")
    assert stop.data == b'{"stopReason":"end_turn"}'
    assert (exception.event, exception.headers[":message-type"]) == (
        "throttlingException",
        "exception",
    )
    assert exception.data == b'{"message":"slow down"}'
    assert (error.event, error.headers[":error-message"]) == ("InternalFailure", "boom")


def test_a_stream_cut_mid_frame_fails_at_finish() -> None:
    frame = es.event_frame("messageStart", {"role": "assistant"})
    decoder = EventStreamDecoder()
    assert decoder.feed(frame + frame[:20]) != []
    with pytest.raises(ProviderError) as info:
        decoder.finish()
    assert info.value.failure_class is FailureClass.TRANSIENT


def test_empty_message_and_clean_finish() -> None:
    decoder = EventStreamDecoder()
    [event] = decoder.feed(es.encode_message([], b""))
    assert event == StreamEvent(None, b"", {})
    assert decoder.finish() == []


def test_impossible_headers_length_is_rejected() -> None:
    frame = bytearray(es.encode_message([], b"payload"))
    frame[4:8] = (1000).to_bytes(4, "big")  # more header bytes than the message holds
    frame[8:12] = __import__("zlib").crc32(bytes(frame[:8])).to_bytes(4, "big")
    with pytest.raises(ProviderError, match="impossible headers length"):
        EventStreamDecoder().feed(bytes(frame))


def test_a_message_over_the_cap_is_refused_from_its_prelude() -> None:
    """The prelude announces the length: a message over `max_event_bytes` is refused before
    it is buffered (issue 10 item 7), and one under it still decodes."""
    big = es.encode_message([(":event-type", es.STRING, "chunk")], b"x" * 70_000)
    decoder = EventStreamDecoder(max_event_bytes=65_536)
    with pytest.raises(ProviderError) as info:
        decoder.feed(big[:12])  # the prelude alone is enough to know
    assert info.value.status == 502 and "larger than 65536 bytes" in info.value.message
    [event] = EventStreamDecoder(max_event_bytes=128 * 1024).feed(big)
    assert len(event.data) == 70_000
