"""The streamed body mode's frames (the scheme: shared/hop.py's docstring).

The edge tags each chunk of an upload as it relays it (`Framer`); the core checks each frame as
it arrives (`Deframer`) and hands on only data whose tag, chained to every frame before it,
checks out. Neither side ever holds more than one frame: a 30 MiB upload crosses the hop in
256 KiB pieces, and a body that ends without its closing frame (truncated, or abandoned by an
edge that refused it mid-stream) is refused before anything reaches a provider.
"""

from __future__ import annotations

import hashlib
import hmac

TAG_BYTES = 32
HEAD_BYTES = 4 + TAG_BYTES
MAX_FRAME_BYTES = 256 * 1024


class BrokenChain(Exception):
    """The framed body does not verify: truncated, reordered, altered, spliced or overlong."""


class _Chain:
    """tag_i = HMAC(seed, tag_{i-1} | u32 length | data), from 32 zero bytes."""

    __slots__ = ("_keyed", "last")

    def __init__(self, seed: bytes) -> None:
        self._keyed = hmac.new(seed, digestmod=hashlib.sha256)
        self.last = bytes(TAG_BYTES)

    def tag(self, length: bytes, data: bytes | memoryview) -> bytes:
        state = self._keyed.copy()
        state.update(self.last)
        state.update(length)
        state.update(data)
        self.last = state.digest()
        return self.last


class Framer:
    """The edge's side: each chunk as (head, data) pieces to write, then the closing frame."""

    __slots__ = ("_chain",)

    def __init__(self, seed: bytes) -> None:
        self._chain = _Chain(seed)

    def frames(self, data: bytes) -> list[bytes]:
        """`data` as frames of at most MAX_FRAME_BYTES (never an empty one: that closes)."""
        out: list[bytes] = []
        for at in range(0, len(data), MAX_FRAME_BYTES):
            piece = data[at : at + MAX_FRAME_BYTES]
            length = len(piece).to_bytes(4, "big")
            out += (length + self._chain.tag(length, piece), piece)
        return out

    def close(self) -> bytes:
        length = bytes(4)
        return length + self._chain.tag(length, b"")


class Deframer:
    """The core's side: feed what arrives, get back verified data; `finish` at the end."""

    __slots__ = ("_buffer", "_chain", "closed")

    def __init__(self, seed: bytes) -> None:
        self._chain = _Chain(seed)
        self._buffer = bytearray()
        self.closed = False

    def feed(self, chunk: bytes) -> list[bytes]:
        if self.closed and chunk:
            raise BrokenChain("bytes after the closing frame")
        self._buffer += chunk
        out: list[bytes] = []
        while len(self._buffer) >= HEAD_BYTES:
            head = self._buffer[:4]
            length = int.from_bytes(head, "big")
            if length > MAX_FRAME_BYTES:
                raise BrokenChain("a frame longer than the limit")
            if len(self._buffer) < HEAD_BYTES + length:
                break
            view = memoryview(self._buffer)
            data = bytes(view[HEAD_BYTES : HEAD_BYTES + length])
            tag = bytes(view[4:HEAD_BYTES])
            view.release()
            if not hmac.compare_digest(self._chain.tag(bytes(head), data), tag):
                raise BrokenChain("a frame whose tag does not match")
            del self._buffer[: HEAD_BYTES + length]
            if length == 0:
                self.closed = True
                if self._buffer:
                    raise BrokenChain("bytes after the closing frame")
                break
            out.append(data)
        return out

    def finish(self) -> None:
        """The body ended: it must have ended with its closing frame."""
        if not self.closed or self._buffer:
            raise BrokenChain("the body ended without its closing frame")
