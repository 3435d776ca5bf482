"""One light client for both kinds of call: c=1 non-streaming latency and stream time to first
token, alternated on one kept-alive connection (issue 17's stream target).

The target compares a stream's time to first token added by a gateway with the non-streaming
latency it adds. The harness's other figures come from two different clients: wrk (C) for
non-streaming calls, an aiohttp session for streams, started afresh for each phase of 50
streams right after the c=50 load. Their difference, and the Python client's own cost per
chunk, land in one side of the ratio only (the two-hop floor measured that way adds 2.4 times
more to a stream's first token than to a plain call). Here one blocking socket client, a few
microseconds of Python per response, sends a plain call, then a stream, then a plain call...
on the same connection, so both sides of the ratio see the same client, connection and moment.

A stream's first token is the first event whose `choices[].delta.content` is not empty (as
tests/bench/load.py counts it); the stream is then read to its end, and checked to end with
`[DONE]`, before the next call.
"""

from __future__ import annotations

import socket
import statistics
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from tests.bench.load import CHAT_PATH, chat_body

WARMUP = 20


class ProbeError(RuntimeError):
    """A response the probe cannot use (a status other than 200, a stream without [DONE])."""


@dataclass(frozen=True)
class ProbeResult:
    plain_ms: list[float]
    ttft_ms: list[float]

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": len(self.plain_ms),
            "plain_p50_ms": round(statistics.median(self.plain_ms), 4),
            "ttft_p50_ms": round(statistics.median(self.ttft_ms), 4),
        }


class _Reader:
    """An HTTP/1.1 response reader over a blocking socket: content-length or chunked bodies."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ProbeError("the connection closed mid-response")
        self.buffer += data

    def head(self) -> dict[bytes, bytes]:
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._more()
        lines = self.buffer[:end].split(b"\r\n")
        self.buffer = self.buffer[end + 4 :]
        status = lines[0].split(b" ", 2)[1]
        if status != b"200":
            raise ProbeError(f"HTTP {status.decode()}")
        fields = (line.split(b":", 1) for line in lines[1:])
        return {name.strip().lower(): value.strip() for name, value in fields}

    def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._more()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            self._more()
        data, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
        return data

    def chunks(self) -> Any:
        """The body's chunks as they arrive (chunked transfer coding)."""
        while True:
            size = int(self.line().split(b";", 1)[0], 16)
            if size == 0:
                self.line()  # no trailers are sent here: the empty line that ends the body
                return
            yield self.exactly(size)
            self.exactly(2)


def _has_content(event: bytes) -> bool:
    if not event.startswith(b"data:"):
        return False
    data = event[5:].strip()
    if data == b"[DONE]":
        return False
    chunk = orjson.loads(data)
    return any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or ())


class Probe:
    """One kept-alive connection to `url`; `plain()` and `stream()` time one call each."""

    def __init__(self, url: str, token: str | None, headers: dict[str, str] | None) -> None:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        self.sock = socket.create_connection((host, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = _Reader(self.sock)
        extra = dict(headers or {})
        if token:
            extra["authorization"] = f"Bearer {token}"
        self.plain_request = self._request(f"{host}:{port}", chat_body("fast"), extra)
        self.stream_request = self._request(f"{host}:{port}", chat_body("stream20", True), extra)

    @staticmethod
    def _request(host: str, body: bytes, headers: dict[str, str]) -> bytes:
        lines = [f"POST {CHAT_PATH} HTTP/1.1", f"host: {host}", "content-type: application/json"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"content-length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def plain(self) -> float:
        started = time.perf_counter()
        self.sock.sendall(self.plain_request)
        head = self.reader.head()
        if b"content-length" in head:
            self.reader.exactly(int(head[b"content-length"]))
        else:
            for _ in self.reader.chunks():
                pass
        return (time.perf_counter() - started) * 1000

    def stream(self) -> float:
        started = time.perf_counter()
        self.sock.sendall(self.stream_request)
        self.reader.head()
        first: float | None = None
        pending, done = b"", False
        for chunk in self.reader.chunks():
            pending += chunk
            *events, pending = pending.replace(b"\r\n", b"\n").split(b"\n\n")
            for event in events:
                if first is None and _has_content(event):
                    first = time.perf_counter()
                done = done or event.strip() == b"data: [DONE]"
        if first is None or not done:
            raise ProbeError("a stream ended without content or without [DONE]")
        return (first - started) * 1000

    def close(self) -> None:
        self.sock.close()


def run_probe(
    url: str, token: str | None, headers: dict[str, str] | None, pairs: int
) -> ProbeResult:
    """`pairs` plain calls and streams, alternated, after WARMUP pairs that are not counted."""
    probe = Probe(url, token, headers)
    plain: list[float] = []
    ttft: list[float] = []
    try:
        for number in range(WARMUP + pairs):
            p, t = probe.plain(), probe.stream()
            if number >= WARMUP:
                plain.append(p)
                ttft.append(t)
    finally:
        probe.close()
    return ProbeResult(plain, ttft)
