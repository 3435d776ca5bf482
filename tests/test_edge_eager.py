"""Eager bodies between the tiers (edge/corecall.py): a JSON body goes out with its head only to
cores that say their hop nonces are shared (Redis), every attempt then carries the same
credential, and a later attempt refused as replayed (an earlier replica took the request) is the
core's timeout, never a 401. Fake cores on raw sockets record what the edge sends them and
whether the body came before their `100 Continue`; a real core says what it is."""

from __future__ import annotations

import select
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import orjson
import pytest

from edge.corecall import CoreCaller
from shared import hop
from shared.h1 import Response
from tests.support import hop_client, raw
from tests.support.stack import Stack

CHAT = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}
ACK_TIMEOUT_S = 0.5
REPLAYED = orjson.dumps(
    {"error": {"message": "replayed", "type": "invalid_request_error", "code": "x"}}
)


@dataclass
class Seen:
    credential: str
    eager: bool  # the body was in before this core sent its `100 Continue`


class FakeCore(socketserver.ThreadingTCPServer):
    """`mode`: shared | local (answers 200 saying so), stall (never answers), replayed (401
    as replayed for a credential another fake core saw first, else as `shared`)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, mode: str, registry: dict[str, str]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = mode
        self.registry = registry  # credential -> the url of the fake core that saw it first
        self.seen: list[Seen] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(socketserver.BaseRequestHandler):
    server: FakeCore

    def handle(self) -> None:
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                data = self.request.recv(65536)
                if not data:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            headers = _headers(head)
            length = int(headers.get("content-length", "0"))
            if len(buffer) < length and select.select([self.request], [], [], 0.3)[0]:
                buffer += self.request.recv(65536)
            eager = len(buffer) >= length
            credential = headers[hop.HOP_HEADER]
            self.server.seen.append(Seen(credential, eager))
            first = self.server.registry.setdefault(credential, self.server.url)
            if self.server.mode == "stall":
                while self.request.recv(65536):
                    pass
                return
            self.request.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            while len(buffer) < length:
                buffer += self.request.recv(65536)
            buffer = buffer[length:]
            self.request.sendall(self._answer(first != self.server.url))

    def _answer(self, taken_elsewhere: bool) -> bytes:
        if self.server.mode == "replayed" and taken_elsewhere:
            extra = f"{hop.REFUSED_HEADER}: {hop.REFUSED_REPLAYED}\r\n"
            return _response(401, REPLAYED, extra)
        said = "local" if self.server.mode == "local" else "shared"
        body = b'{"id":"c","object":"chat.completion","choices":[]}'
        return _response(200, body, f"{hop.NONCES_HEADER}: {said}\r\n")


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _response(status: int, body: bytes, extra: str) -> bytes:
    head = (
        f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{extra}"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _edge(workdir: Path, cores: list[FakeCore]) -> Stack:
    edge = {
        "pools": {"default": [core.url for core in cores]},
        "core_ack_timeout": f"{ACK_TIMEOUT_S}s",
        "replica_eject_after": 1000,  # a stalling fake stays in rotation
    }
    return Stack(workdir, {"edge": edge}).start()


@pytest.fixture
def registry() -> dict[str, str]:
    return {}


def call(stack: Stack) -> raw.RawResponse:
    return raw.post(f"{stack.edge_url}/v1/chat/completions", CHAT, stack.token())


def test_bodies_go_eagerly_once_every_core_says_its_nonces_are_shared(
    tmp_path: Path, registry: dict[str, str]
) -> None:
    cores = [FakeCore("shared", registry), FakeCore("shared", registry)]
    stack = _edge(tmp_path, cores)
    try:
        answers = [call(stack) for _ in range(6)]
        assert [a.status for a in answers] == [200] * 6
        assert all(hop.NONCES_HEADER not in a.headers for a in answers)  # the edge's alone
        first, second = (core.seen for core in cores)
        assert first and second
        # Waits for the acknowledgement until both said "shared"; eager from then on.
        assert not first[0].eager and not second[0].eager
        assert first[-1].eager and second[-1].eager
    finally:
        stack.stop()


def test_a_core_that_says_local_keeps_the_acknowledgement(
    tmp_path: Path, registry: dict[str, str]
) -> None:
    core = FakeCore("local", registry)
    stack = _edge(tmp_path, [core])
    try:
        assert [call(stack).status for _ in range(3)] == [200] * 3
        assert [seen.eager for seen in core.seen] == [False] * 3
    finally:
        stack.stop()


def test_a_retry_refused_as_replayed_is_the_cores_timeout(
    tmp_path: Path, registry: dict[str, str]
) -> None:
    """The first replica took the body and stalled; the retry's replica finds the nonce
    claimed: the same credential went to both, and the client hears a 504, not a 401."""
    stalls, refuses = FakeCore("shared", registry), FakeCore("shared", registry)
    stack = _edge(tmp_path, [stalls, refuses])
    try:
        assert [call(stack).status for _ in range(4)] == [200] * 4  # both said "shared"
        stalls.mode, refuses.mode = "stall", "replayed"
        for _ in range(4):  # the rotation puts the stalling replica first within two
            before = len(stalls.seen)
            answer = call(stack)
            if len(stalls.seen) > before and stalls.seen[-1].eager:
                break
        else:
            pytest.fail("the stalling replica was never tried first")
        assert answer.status == 504, answer.body
        assert answer.json()["error"]["code"] == "core_timeout"
        assert hop.REFUSED_HEADER not in answer.headers
        assert refuses.seen[-1].credential == stalls.seen[-1].credential
    finally:
        stack.stop()
        for core in (stalls, refuses):
            core.shutdown()


@pytest.fixture(scope="module")
def redis_stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("eager"), {"state": {"redis_url": redis_url}}).start()
    yield stack
    stack.stop()


def test_a_core_on_redis_says_its_nonces_are_shared_and_names_a_replay(
    redis_stack: Stack,
) -> None:
    secret = redis_stack.env["INTERLOCK_HOP_SECRET"]
    headers, data = hop_client.signed(secret, CHAT)
    url = f"{redis_stack.core_url}/v1/chat/completions"
    answer = raw.post(url, data, headers=headers)
    assert answer.status == 200
    assert answer.headers[hop.NONCES_HEADER] == hop.NONCES_SHARED
    again = raw.post(url, data, headers=headers)
    assert again.status == 401
    assert again.headers[hop.REFUSED_HEADER] == hop.REFUSED_REPLAYED
    through = call(redis_stack)  # and the edge keeps both to itself
    assert through.status == 200
    assert hop.NONCES_HEADER not in through.headers


class _Heard:
    """What CoreCaller._heard reads of a response: its status and headers."""

    def __init__(self, said: str) -> None:
        self.status = 200
        self.headers = {hop.NONCES_HEADER: said}

    def close(self) -> None:
        pass


def test_eager_needs_every_replica_shared_and_a_credential_fresh_for_every_attempt() -> None:
    urls = [f"http://core{i}" for i in range(8)]
    caller = CoreCaller(3.0, 5.0, 630.0, 900.0, urls, max_skew_s=60.0)
    assert not caller.eager(urls[:2])  # nothing heard yet
    for url in urls:
        caller._heard(url, cast(Response, _Heard(hop.NONCES_SHARED)), retried=False)
    assert caller.eager(urls[:1]) and caller.eager(urls[:7])  # 7 x 8 s < 60 s
    assert not caller.eager(urls)  # the eighth attempt could start after the credential's 60 s
    caller._heard(urls[0], cast(Response, _Heard(hop.NONCES_LOCAL)), retried=False)
    assert not caller.eager(urls[:2]) and caller.eager(urls[1:3])
    caller._heard("http://elsewhere", cast(Response, _Heard(hop.NONCES_SHARED)), retried=False)
    assert not caller.eager(["http://elsewhere"])  # only configured cores are remembered
