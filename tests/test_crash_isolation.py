"""One tenant's crash never fails another tenant's request (issue 8, finding 2).

Before: an unhandled exception in the core produced a 500 without `Connection: close`, after
which uvicorn closed the socket. The edge had already put that connection back in its pool, so
the next request (any tenant's) was written into a dying socket: 502 core_unavailable, 60 times
in 100. Now the core's 500 closes the connection explicitly, and the edge sends a request once
more, on a new connection, when a pooled connection was closed before any byte of an answer.
Both halves are tested on their own: a real core that crashes on a marker (through the real
edge, and on a raw socket), and a stand-in core that drops kept-alive connections unanswered.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.support import raw
from tests.support.crashing_core import CRASHING_CORE, MARKER
from tests.support.net import wait_http
from tests.support.sockets import connect, wait_outcome
from tests.support.stack import Stack
from tests.support.stale_core import ANSWER, StaleCore

CHAT = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def crashing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("crashing")).start(core_app=CRASHING_CORE)
    try:
        yield running
    finally:
        running.stop()


def test_a_crash_for_tenant_a_never_changes_tenant_bs_next_answer(crashing: Stack) -> None:
    """Sequential, each tenant on its own kept-alive client connection, so B's request reaches
    the edge right after A's answer (the window in which the edge's pool held the dying
    connection)."""
    token_a, token_b = crashing.token("tenant-a"), crashing.token("tenant-b")
    body = orjson.dumps(CHAT)
    a_client = http.client.HTTPConnection("127.0.0.1", crashing.edge_port, timeout=30)
    b_client = http.client.HTTPConnection("127.0.0.1", crashing.edge_port, timeout=30)
    a_statuses, b_statuses = [], []
    try:
        for _ in range(100):
            a_statuses.append(send(a_client, body, token_a, {"idempotency-key": MARKER})[0])
            b_statuses.append(send(b_client, body, token_b, {})[0])
        crash = send(a_client, body, token_a, {"idempotency-key": MARKER})
    finally:
        a_client.close()
        b_client.close()
    assert b_statuses == [200] * 100, f"{sum(s != 200 for s in b_statuses)} of 100 failed"
    assert set(a_statuses) == {500}
    assert orjson.loads(crash[1])["error"]["code"] == "internal_error"
    assert b"Traceback" not in crash[1] and b"deliberate" not in crash[1]


def send(
    client: http.client.HTTPConnection, body: bytes, token: str, headers: dict[str, str]
) -> tuple[int, bytes]:
    client.request(
        "POST",
        "/v1/chat/completions",
        body,
        {"authorization": f"Bearer {token}", "content-type": "application/json", **headers},
    )
    response = client.getresponse()
    return response.status, response.read()


def test_the_core_500_closes_its_connection_cleanly(crashing: Stack) -> None:
    """On a raw kept-alive connection: a complete 500 envelope that says `connection: close`,
    then an orderly close (EOF, no reset), so no client keeps the connection for reuse."""
    with connect(crashing.core_port) as sock:
        sock.sendall(
            f"GET /healthz HTTP/1.1\r\nHost: core\r\nidempotency-key: {MARKER}\r\n\r\n".encode()
        )
        outcome = wait_outcome(sock, 10)
    assert outcome.status == 500, outcome
    assert outcome.headers["connection"] == "close"
    assert len(outcome.body) == int(outcome.headers["content-length"])
    assert orjson.loads(outcome.body)["error"]["code"] == "internal_error"
    assert outcome.closed and not outcome.reset, outcome


def edge_in_front_of(core: StaleCore, workdir: Path) -> Stack:
    stack = Stack(workdir, {"edge": {"pools": {"default": [core.url]}}})
    process = stack._spawn("edge", stack.edge_port)
    try:
        wait_http(f"{stack.edge_url}/healthz", process=process)
    except Exception:
        stack.stop()
        raise
    return stack


@pytest.fixture
def stale() -> Iterator[StaleCore]:
    core = StaleCore().start()
    try:
        yield core
    finally:
        core.stop()


def two_requests(stale: StaleCore, workdir: Path) -> tuple[raw.RawResponse, raw.RawResponse]:
    stack = edge_in_front_of(stale, workdir)
    try:
        url = f"{stack.edge_url}/v1/chat/completions"
        first = raw.post(url, CHAT, stack.token())
        return first, raw.post(url, CHAT, stack.token())
    finally:
        stack.stop()


def test_a_pooled_connection_closed_unanswered_is_retried_on_a_new_one(
    stale: StaleCore, tmp_path: Path
) -> None:
    first, second = two_requests(stale, tmp_path)
    assert (first.status, first.body) == (200, ANSWER)
    assert (second.status, second.body) == (200, ANSWER)
    assert (stale.requests, stale.connections) == (3, 2)  # dropped once, resent on a new one


def test_nothing_is_retried_after_a_byte_of_the_answer(stale: StaleCore, tmp_path: Path) -> None:
    stale.mode = "partial"
    first, second = two_requests(stale, tmp_path)
    assert first.status == 200
    assert second.status == 502 and second.json()["error"]["code"] == "core_unavailable"
    assert stale.requests == 2  # the core may have acted on it: never sent twice


def test_the_retry_happens_once(stale: StaleCore, tmp_path: Path) -> None:
    stale.answer_only_first = True  # the new connection is dropped as well
    first, second = two_requests(stale, tmp_path)
    assert first.status == 200
    assert second.status == 502 and second.json()["error"]["code"] == "core_unavailable"
    assert (stale.requests, stale.connections) == (3, 2)
