"""Raw TCP clients on loopback for what HTTP libraries will not do: trickle headers, stall a
body, hold connections open, connect from a chosen loopback address (127.0.0.2 is a distinct
peer on Linux), and observe exactly when and how the server ends a connection."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field


@dataclass
class Outcome:
    """What the server did with a connection: its answer (if any), whether it closed the
    connection, and after how long (from the start of the wait)."""

    status: int | None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    closed: bool = False
    reset: bool = False
    elapsed: float = 0.0


def connect(port: int, source: str = "127.0.0.1", timeout: float = 5.0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def parse(data: bytes) -> tuple[int | None, dict[str, str], bytes]:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/1."):
        return None, {}, b""
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def wait_outcome(sock: socket.socket, limit: float) -> Outcome:
    """Reads until the server closes the connection or `limit` seconds pass."""
    started = time.monotonic()
    data = b""
    closed = reset = False
    while (left := limit - (time.monotonic() - started)) > 0:
        sock.settimeout(max(left, 0.01))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            closed = reset = True
            break
        if not chunk:
            closed = True
            break
        data += chunk
    status, headers, body = parse(data)
    return Outcome(status, headers, body, closed, reset, time.monotonic() - started)


def read_response(sock: socket.socket, limit: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """One complete response with a Content-Length on a connection that stays open."""
    deadline = time.monotonic() + limit
    data = b""
    while True:
        status, headers, body = parse(data)
        if status is not None and len(body) >= int(headers.get("content-length", "0")):
            return status, headers, body
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed mid-response: {data!r}")
        data += chunk


def trickle(
    sock: socket.socket, data: bytes, every: float, limit: float, step: int = 1
) -> Outcome | None:
    """Sends `data` `step` bytes at a time, one step every `every` seconds, for at most `limit`
    seconds; stops early (returning what happened) as soon as the server answers or closes."""
    started = time.monotonic()
    for offset in range(0, len(data), step):
        if time.monotonic() - started > limit:
            return None
        try:
            sock.sendall(data[offset : offset + step])
        except (BrokenPipeError, ConnectionResetError):
            return Outcome(None, closed=True, reset=True, elapsed=time.monotonic() - started)
        sock.settimeout(every)
        try:
            chunk = sock.recv(65536, socket.MSG_PEEK)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return Outcome(None, closed=True, reset=True, elapsed=time.monotonic() - started)
        # The server spoke: what matters now is whether (and when) it ends the connection.
        left = max(limit - (time.monotonic() - started), 2.0)
        outcome = wait_outcome(sock, left) if chunk else Outcome(None, closed=True)
        outcome.elapsed = time.monotonic() - started
        return outcome
    return None
