"""Slowloris and connection hoarding (issue 8, finding 7d), over raw sockets on loopback.

Before: uvicorn bounded only the idle time after a response, so a connection that sent nothing,
trickled its headers, stalled its body or never terminated a chunked body stayed open as long as
the client liked, and one address could open any number of connections. Now both tiers run
through shared/server.py; this stack uses short limits (header 1 s, body 2 s, 8 connections
per peer) so each case is decided in seconds. Every target is checked: the edge on httptools
(containers, `interlock up`), the edge on h11 (the Lambda zip has no httptools) and the core.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.support.net import free_port, wait_http
from tests.support.sockets import Outcome, connect, read_response, trickle, wait_outcome
from tests.support.stack import Stack
from tests.support.stale_core import StaleCore

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0
PER_CLIENT = 8
SLACK = 2.0  # scheduling on a loaded 2-core machine; old code never closes at all
LIMITS = {
    "header_timeout": f"{HEADER_TIMEOUT}s",
    "body_timeout": f"{BODY_TIMEOUT}s",
    "keepalive_timeout": "20s",
    "max_connections_per_client": PER_CLIENT,
}
TARGETS = ("edge", "edge-h11", "core")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Edge and core, plus a second edge on h11; PORTS maps each target to its port."""
    overrides = {"edge": {"server": LIMITS}, "core": {"server": LIMITS}}
    running = Stack(tmp_path_factory.mktemp("limits"), overrides).start()
    h11_port = free_port()
    h11 = running._spawn("edge", h11_port, "edge-h11", http="h11")
    try:
        wait_http(f"http://127.0.0.1:{h11_port}/healthz", process=h11)
        PORTS.update(edge=running.edge_port, core=running.core_port, **{"edge-h11": h11_port})
        yield running
    finally:
        running.stop()


PORTS: dict[str, int] = {}


def port_of(stack: Stack, target: str) -> int:
    return PORTS[target]


def head(stack: Stack, target: str, extra: str = "", length: int | None = None) -> bytes:
    """A chat request's head; through the edge with a valid token, so the edge reads the body."""
    lines = ["POST /v1/chat/completions HTTP/1.1", "Host: gateway"]
    lines.append("Content-Type: application/json")
    if target != "core":
        lines.append(f"Authorization: Bearer {stack.token()}")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n" + extra).encode()


def assert_timed_out(outcome: Outcome | None, bound: float, target: str) -> None:
    assert outcome is not None, "the server was still waiting when the client gave up"
    assert outcome.closed, outcome
    assert outcome.elapsed < bound + SLACK, outcome
    if outcome.status is not None:
        # The core refuses a missing hop credential before reading the body: its 401 is sent,
        # then the body deadline closes the connection.
        assert outcome.status in (401, 408), outcome
        assert "error" in orjson.loads(outcome.body)
    if outcome.status == 408:
        assert outcome.headers["connection"] == "close"


@pytest.mark.parametrize("target", TARGETS)
def test_a_connection_that_sends_nothing_is_closed(stack: Stack, target: str) -> None:
    with connect(port_of(stack, target)) as sock:
        outcome = wait_outcome(sock, HEADER_TIMEOUT + SLACK)
    assert outcome.closed and outcome.status is None, outcome


@pytest.mark.parametrize("target", TARGETS)
def test_headers_trickled_byte_by_byte_get_408_within_the_header_timeout(
    stack: Stack, target: str
) -> None:
    slow = head(stack, target, "X-Padding: " + "a" * 200 + "\r\n\r\n")
    with connect(port_of(stack, target)) as sock:
        outcome = trickle(sock, slow, every=0.1, limit=HEADER_TIMEOUT + 2 * SLACK)
    assert_timed_out(outcome, HEADER_TIMEOUT, target)
    assert outcome is not None and outcome.status == 408


@pytest.mark.parametrize("target", TARGETS)
def test_a_body_trickled_slowly_is_cut_off_at_the_body_timeout(stack: Stack, target: str) -> None:
    body = orjson.dumps({"model": "mock-1", "messages": [{"role": "user", "content": "x" * 100}]})
    with connect(port_of(stack, target)) as sock:
        sock.sendall(head(stack, target, "\r\n", length=len(body)))
        outcome = trickle(sock, body, every=0.2, limit=BODY_TIMEOUT + 2 * SLACK, step=2)
    assert_timed_out(outcome, BODY_TIMEOUT, target)
    if target != "core":
        assert outcome is not None and outcome.status == 408
        assert orjson.loads(outcome.body)["error"]["code"] == "timeout"


@pytest.mark.parametrize("target", TARGETS)
def test_an_unterminated_chunked_body_is_answered_and_closed(stack: Stack, target: str) -> None:
    with connect(port_of(stack, target)) as sock:
        sock.sendall(head(stack, target, 'Transfer-Encoding: chunked\r\n\r\n5\r\n{"mod\r\n'))
        outcome = wait_outcome(sock, BODY_TIMEOUT + 2 * SLACK)
    assert_timed_out(outcome, BODY_TIMEOUT, target)
    if target != "core":
        assert outcome.status == 408


@pytest.mark.parametrize("target", ("edge", "edge-h11"))
def test_connections_beyond_the_per_client_budget_are_refused_while_others_are_served(
    stack: Stack, target: str
) -> None:
    port = port_of(stack, target)
    healthz = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n"
    held: list[socket.socket] = []
    try:
        for _ in range(PER_CLIENT):  # each serves a request, then idles in keep-alive (20 s)
            sock = connect(port)
            held.append(sock)
            sock.sendall(healthz)
            assert read_response(sock)[0] == 200
        with connect(port) as extra:
            refused = wait_outcome(extra, SLACK)
        assert refused.status == 429 and refused.closed, refused
        assert orjson.loads(refused.body)["error"]["code"] == "too_many_connections"
        with connect(port, source="127.0.0.2") as other:  # another peer has its own budget
            other.sendall(healthz)
            assert read_response(other)[0] == 200
        held.pop().close()
        deadline = time.monotonic() + 5
        while True:  # the freed slot is usable again once the server saw the close
            with connect(port) as again:
                again.sendall(healthz)
                outcome = wait_outcome(again, 1.0)
            if outcome.status == 200 or time.monotonic() > deadline:
                break
        assert outcome.status == 200, outcome
    finally:
        for sock in held:
            sock.close()


@pytest.mark.parametrize("target", ("edge", "edge-h11"))
def test_upgrade_requests_give_their_budget_slot_back(stack: Stack, target: str) -> None:
    """An upgraded connection would leave the protocol that counts it: a budget leak any
    client could use to lock its address (and, with `max_connections`, everyone) out."""
    port = port_of(stack, target)
    upgrade = (
        b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nConnection: Upgrade\r\n"
        b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    for _ in range(PER_CLIENT + 2):
        with connect(port) as sock:
            sock.sendall(upgrade)
            status, _, body = read_response(sock)
        assert status == 200, body  # served as plain HTTP, never refused
        time.sleep(0.05)  # let the server see the close before the next connection


@pytest.mark.parametrize("target", TARGETS)
def test_oversized_headers_are_refused_with_an_envelope(stack: Stack, target: str) -> None:
    """80 KB of headers (the cap is 64 KiB): httptools alone would take any amount."""
    huge = "".join(f"X-Filler-{i}: {'v' * 1000}\r\n" for i in range(80))
    with connect(port_of(stack, target)) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head(stack, target, huge + "\r\n"))
        outcome = wait_outcome(sock, SLACK)
    assert outcome.closed, outcome
    assert outcome.status == 431, outcome
    assert orjson.loads(outcome.body)["error"]["code"] == "invalid_header"


@pytest.mark.parametrize("target", TARGETS)
def test_a_malformed_request_gets_a_json_envelope(stack: Stack, target: str) -> None:
    with connect(port_of(stack, target)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n")
        outcome = wait_outcome(sock, SLACK)
    assert outcome.status == 400 and outcome.closed, outcome
    assert orjson.loads(outcome.body)["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("target", TARGETS)
def test_a_kept_alive_connection_idles_longer_than_the_header_timeout(
    stack: Stack, target: str
) -> None:
    """Between requests the keep-alive timeout (20 s) applies, not the header timeout."""
    healthz = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n"
    with connect(port_of(stack, target)) as sock:
        sock.sendall(healthz)
        assert read_response(sock)[0] == 200
        time.sleep(HEADER_TIMEOUT + 0.5)
        sock.sendall(healthz)
        assert read_response(sock)[0] == 200


def test_a_client_that_stops_reading_is_cut_off_at_the_send_timeout(tmp_path: Path) -> None:
    """16 MB answered to a client that never reads: the edge's send buffer stays full. Before,
    the connection (and the response held in memory) lived as long as the client wanted."""
    size = 16 * 1024 * 1024
    core = StaleCore(answer=b"x" * size).start()
    overrides = {"edge": {"pools": {"default": [core.url]}, "server": {"send_timeout": "1s"}}}
    stack = Stack(tmp_path, overrides)
    try:
        wait_http(f"{stack.edge_url}/healthz", process=stack._spawn("edge", stack.edge_port))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: no autotune
        with sock:
            sock.connect(("127.0.0.1", stack.edge_port))
            body = orjson.dumps({"model": "mock-1", "messages": []})
            sock.sendall(head(stack, "edge", "\r\n", length=len(body)) + body)
            time.sleep(1.0 + SLACK)  # not reading
            received, ended = 0, False
            sock.settimeout(5)
            try:
                while chunk := sock.recv(1 << 20):
                    received += len(chunk)
                ended = True
            except ConnectionResetError:
                ended = True
            except TimeoutError:
                pass  # the whole answer arrived and the connection is still open
        assert ended and 0 < received < size, (ended, received)
    finally:
        stack.stop()
        core.stop()


def test_limits_are_read_from_the_config(tmp_path: Path) -> None:
    from shared.config import parse_config
    from shared.configparse import ConfigError

    raw = {"providers": {"m": {"kind": "mock"}}, "core": {"server": {"body_timeout": "45s"}}}
    config = parse_config(raw, "test", {})
    assert config.core.server.body_timeout_s == 45
    assert config.core.server.max_connections_per_client == 0  # only edges connect
    assert config.edge.server.max_connections_per_client == 64
    assert (config.edge.server.header_timeout_s, config.edge.server.body_timeout_s) == (10, 30)
    with pytest.raises(ConfigError, match=r"edge\.server\.header_timeout"):
        parse_config({**raw, "edge": {"server": {"header_timeout": 0}}}, "test", {})
    with pytest.raises(ConfigError, match=r"core\.server\.nope: unknown key"):
        parse_config({**raw, "core": {"server": {"nope": 1}}}, "test", {})
