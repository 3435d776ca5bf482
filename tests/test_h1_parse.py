"""shared/h1/parse.py: response heads and body framing, fed in every split a socket may give."""

from __future__ import annotations

import pytest

from shared.h1.errors import ProtocolError
from shared.h1.parse import BodyFramer, Head, framer_for, parse_head


def _head(raw: bytes) -> Head:
    buffer = bytearray(raw)
    head = parse_head(buffer)
    assert head is not None
    return head


def test_a_head_is_parsed_only_once_whole_and_leaves_the_body():
    raw = b"HTTP/1.1 200 OK\r\nContent-Type: a/b\r\nX-A: 1\r\nx-a: 2\r\n\r\nbody"
    for cut in range(len(raw) - 4):
        assert parse_head(bytearray(raw[:cut])) is None
    buffer = bytearray(raw)
    head = parse_head(buffer)
    assert head == Head(200, "OK", {"content-type": "a/b", "x-a": "1, 2"}, True)
    assert buffer == b"body"


@pytest.mark.parametrize(
    ("raw", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\n\r\n", False),
        (b"HTTP/1.1 204 \r\n\r\n", True),
    ],
)
def test_keep_alive_follows_the_version_and_connection(raw, keep_alive):
    assert _head(raw).keep_alive is keep_alive


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 2\xb20 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n",
    ],
)
def test_malformed_heads_are_protocol_errors(raw):
    with pytest.raises(ProtocolError):
        parse_head(bytearray(raw))


def test_a_head_without_end_is_refused_past_the_limit():
    with pytest.raises(ProtocolError):
        parse_head(bytearray(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000))


def _feed_split(framer: BodyFramer, raw: bytes, step: int) -> bytes:
    out = b""
    for start in range(0, len(raw), step):
        out += b"".join(framer.feed(raw[start : start + step]))
    return out


CHUNKED = b"5;ext=1\r\nhello\r\n1A\r\n" + b"z" * 26 + b"\r\n0\r\nTrailer: x\r\n\r\nNEXT"


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
def test_chunked_bodies_in_any_split(step):
    framer = BodyFramer(None, chunked=True)
    assert _feed_split(framer, CHUNKED, step) == b"hello" + b"z" * 26
    assert framer.done
    assert framer.extra == b"NEXT"  # bytes past the end: the connection is not reused


@pytest.mark.parametrize("raw", [b"xyz\r\n", b"5\r\nhelloXX\r\n", b"-1\r\n", b"\r\n", b"f" * 5000])
def test_bad_chunk_framing_is_a_protocol_error(raw):
    with pytest.raises(ProtocolError):
        BodyFramer(None, chunked=True).feed(raw)


@pytest.mark.parametrize("step", [1, 4, 100])
def test_content_length_bodies_end_at_their_length(step):
    framer = BodyFramer(10, chunked=False)
    assert _feed_split(framer, b"0123456789", step) == b"0123456789"
    assert framer.done and not framer.extra
    framer = BodyFramer(3, chunked=False)
    assert framer.feed(b"abcdef") == [b"abc"] and framer.extra == b"def"


def test_framing_is_chosen_from_the_method_status_and_headers():
    def framer(headers: dict[str, str], status: int = 200, method: str = "GET") -> BodyFramer:
        return framer_for(Head(status, "", headers, True), method)

    assert framer({"content-length": "9"}, method="HEAD").done
    assert framer({"content-length": "9"}, status=304).done
    assert framer({}, status=204).done
    assert framer({"content-length": "0"}).done
    assert framer({"content-length": "7, 7"}).length == 7
    assert framer({"transfer-encoding": "gzip, chunked", "content-length": "3"}).chunked
    assert framer({"transfer-encoding": "gzip"}).close_ends
    assert framer({}).close_ends
    for bad in ("7, 8", "-1", "1e3", "\xb2"):
        with pytest.raises(ProtocolError):
            framer({"content-length": bad})
