"""Uploads streamed end to end, never held whole: the official OpenAI SDK's
`audio.transcriptions.create` through a real edge and core (subprocesses on loopback) to the
wire-faithful fake of tests/support/fake_media.py.

Checked: a 30 MiB upload goes through while neither tier's resident memory grows by anything
near its size; the edge's limit is a 413 naming `file` and the limit, up front (Content-Length)
and mid-stream (chunked), and then no provider is called; the core's own limit likewise; a
framed body that was tampered with, truncated or replayed is refused by the core; a failover
sends the spooled file again to the second provider; the SDK's retry with the same
Idempotency-Key (a new multipart boundary) is a replay, not a 422; and the spool's temporary
files are gone however the request ends (success, provider failure, client gone).
"""

from __future__ import annotations

import http.client
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import orjson
import pytest

from shared import hop
from shared.hop_stream import Framer
from tests.support import sockets
from tests.support.fake_media import TEXT, FakeOpenAIMedia, make_wav
from tests.support.stack import Stack

MiB = 1024 * 1024
EDGE_LIMIT = 34 * MiB
CORE_LIMIT = 32 * MiB
PATH = "/v1/audio/transcriptions"


@pytest.fixture(scope="module")
def media() -> Iterator[FakeOpenAIMedia]:
    server = FakeOpenAIMedia()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def spool_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("spool")


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, media: FakeOpenAIMedia, spool_dir: Path
) -> Iterator[Stack]:
    oai = {"kind": "openai", "base_url": f"{media.url}/v1", "api_key": media.api_key}
    targets = [{"provider": "oai", "model": "whisper-fail-500"}]
    overrides = {
        "providers": {"oai": {**oai, "options": {"preset": "openai"}}, "groq": {**oai}},
        "models": {
            "whisper": {"provider": "oai", "model": "whisper-1"},
            "whisper-slow": {"provider": "groq", "model": "whisper-slow-once"},
            "whisper-broken": {"targets": targets},
            "whisper-failover": {
                "targets": [*targets, {"provider": "groq", "model": "whisper-large-v3"}]
            },
        },
        "edge": {"max_upload_bytes": EDGE_LIMIT},
        "core": {"max_upload_bytes": CORE_LIMIT, "upload_dir": str(spool_dir)},
    }
    overrides["providers"]["groq"]["options"] = {"preset": "groq"}  # type: ignore[index]
    running = Stack(tmp_path_factory.mktemp("upload-stack"), overrides).start()
    yield running
    running.stop()


def client(stack: Stack, **options: Any) -> openai.OpenAI:
    options.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=f"{stack.edge_url}/v1", api_key=stack.token(), **options)


def pids(stack: Stack) -> tuple[int, int]:
    core, edge = stack.processes[:2]
    return core.pid, edge.pid


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def spool_fds(pid: int) -> list[str]:
    """The core's open descriptors on upload spool files (unlinked, so '... (deleted)')."""
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if "interlock-upload-" in target:
            found.append(target)
    return found


class PeakRss:
    """Samples both tiers' RSS every few milliseconds while a request runs."""

    def __init__(self, *watched: int) -> None:
        self.pids = watched
        self.before = {pid: rss(pid) for pid in watched}
        self.peak = dict(self.before)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self.pids:
                self.peak[pid] = max(self.peak[pid], rss(pid))
            time.sleep(0.002)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def growth(self, pid: int) -> int:
        return self.peak[pid] - self.before[pid]


def test_a_30_mib_upload_streams_through_both_tiers(stack: Stack, media: FakeOpenAIMedia) -> None:
    sdk = client(stack, timeout=120)
    sdk.audio.transcriptions.create(model="whisper", file=("warm.wav", make_wav(100.0)))
    audio = make_wav(30 * MiB / 16_000)  # 16 kB a second: 30 MiB of WAV
    assert len(audio) > 30 * MiB
    media.reset()
    core, edge = pids(stack)
    with PeakRss(core, edge) as memory:
        answer = sdk.audio.transcriptions.with_raw_response.create(
            model="whisper", file=("big.wav", audio, "audio/wav")
        )
    assert answer.parse().text == TEXT
    [sent] = media.received
    assert audio in sent.body  # relayed byte for byte, model spliced in
    assert b'name="model"\r\n\r\nwhisper-1\r\n' in sent.body
    assert sent.headers["Content-Length"] == str(len(sent.body))  # sized, not chunked
    # Held whole, either tier would grow by at least the upload (30 MiB); streamed, by a few
    # frames and the spool's memory part (1 MiB) plus allocator noise.
    print(f"RSS growth: core {memory.growth(core)} B, edge {memory.growth(edge)} B")
    for pid in (core, edge):
        assert memory.growth(pid) < 10 * MiB, (pid, memory.growth(pid), memory.before[pid])
    assert spool_fds(core) == []


def _chunked(url: str, token: str, parts: Iterator[bytes], content_type: str) -> Any:
    """POSTs a chunked body (no Content-Length) while reading the answer on the side, so the
    answer is read even if the server stops reading the body first."""
    host, port = url.removeprefix("http://").split(":")
    sock = sockets.connect(int(port), timeout=30)
    head = (
        f"POST {PATH} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {token}\r\n"
        f"content-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    answer: dict[str, Any] = {}
    reader = threading.Thread(target=lambda: answer.update(read=_read_answer(sock)))
    reader.start()
    try:
        sock.sendall(head.encode())
        for part in parts:
            sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # refused mid-body: the answer was sent, then the server stopped reading
    reader.join(30)
    sock.close()
    return answer["read"]


def _read_answer(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    status, _headers, body = sockets.read_response(sock, 30)
    return status, orjson.loads(body)


def multipart_parts(size: int, boundary: str = "Bnd") -> Iterator[bytes]:
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    block = bytes(256 * 1024)
    for _ in range(size // len(block)):
        yield block
    yield f"\r\n--{boundary}--\r\n".encode()


def test_over_the_edge_limit_is_a_413_up_front_and_mid_stream(
    stack: Stack, media: FakeOpenAIMedia
) -> None:
    media.reset()
    with pytest.raises(openai.APIStatusError) as refused:  # Content-Length says it
        client(stack).audio.transcriptions.create(
            model="whisper", file=("big.wav", bytes(EDGE_LIMIT + 1))
        )
    assert refused.value.status_code == 413
    error = refused.value.body
    assert isinstance(error, dict)
    assert (error["param"], error["code"]) == ("file", "request_too_large")
    assert str(EDGE_LIMIT) in error["message"] and "edge.max_upload_bytes" in error["message"]
    core, _ = pids(stack)
    # Chunked: the edge finds out only while relaying; the core has seen part of it by then.
    status, body = _chunked(
        stack.edge_url,
        stack.token(),
        multipart_parts(EDGE_LIMIT + MiB),
        "multipart/form-data; boundary=Bnd",
    )
    assert status == 413, body
    assert body["error"]["param"] == "file" and str(EDGE_LIMIT) in body["error"]["message"]
    assert media.received == []  # the core saw a body without its closing frame
    _eventually(lambda: spool_fds(core) == [])
    assert "unhandled error" not in stack.read_logs()


def test_over_the_core_limit_is_a_413_naming_file(stack: Stack, media: FakeOpenAIMedia) -> None:
    media.reset()
    status, body = _chunked(
        stack.edge_url,
        stack.token(),
        multipart_parts(CORE_LIMIT + MiB),
        "multipart/form-data; boundary=Bnd",
    )
    assert status == 413, body
    assert body["error"]["param"] == "file" and str(CORE_LIMIT) in body["error"]["message"]
    assert media.received == []


def _eventually(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# ---- the framed body, sent to the core directly, as a forger would -------------------------


def _framed(stack: Stack, data: bytes, tamper: Any = None) -> tuple[dict[str, str], list[bytes]]:
    key = hop.HopKey(stack.env["INTERLOCK_HOP_SECRET"].encode())
    request_id = "req_" + os.urandom(12).hex()
    identity = hop.HopIdentity("acme", "default", "*", int(time.time() + 600))
    credential, seed = hop.sign_streamed(key, identity, "POST", PATH, request_id)
    framer = Framer(seed)
    frames = [b"".join(framer.frames(data[at : at + 4096])) for at in range(0, len(data), 4096)]
    frames.append(framer.close())
    if tamper is not None:
        frames = tamper(frames)
    headers = {
        hop.HOP_HEADER: credential,
        hop.REQUEST_ID_HEADER: request_id,
        "content-type": "multipart/form-data; boundary=Bnd",
    }
    return headers, frames


def _post_core(stack: Stack, headers: dict[str, str], frames: list[bytes]) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", stack.core_port, timeout=30)
    try:
        connection.request("POST", PATH, iter(frames), headers, encode_chunked=True)
        response = connection.getresponse()
        return response.status, orjson.loads(response.read())
    finally:
        connection.close()


def _flip(frames: list[bytes]) -> list[bytes]:
    middle = bytearray(frames[1])
    middle[-1] ^= 1
    return [frames[0], bytes(middle), *frames[2:]]


@pytest.mark.parametrize(
    "tamper",
    [
        _flip,  # one data byte changed
        lambda frames: frames[:-1],  # truncated: no closing frame
        lambda frames: [frames[1], frames[0], *frames[2:]],  # reordered
        lambda frames: [frames[0], *frames[2:]],  # a frame dropped
        lambda frames: [*frames, frames[0]],  # bytes after the close
    ],
    ids=["altered", "truncated", "reordered", "dropped", "trailing"],
)
def test_a_tampered_framed_body_is_refused_by_the_core(
    stack: Stack, media: FakeOpenAIMedia, tamper: Any
) -> None:
    data = b"".join(multipart_parts(64 * 1024))
    media.reset()
    headers, frames = _framed(stack, data, tamper)
    status, body = _post_core(stack, headers, frames)
    assert status == 401, body
    assert body["error"]["code"] == "invalid_hop_credential"
    assert media.received == []


def test_an_intact_framed_body_is_taken_once(stack: Stack, media: FakeOpenAIMedia) -> None:
    """The control for the refusals above; and the same credential again is a replay."""
    parts = list(multipart_parts(0))
    data = parts[0] + make_wav(1.0) + parts[-1]
    media.reset()
    headers, frames = _framed(stack, data)
    status, body = _post_core(stack, headers, frames)
    assert (status, body["text"]) == (200, TEXT)
    status, body = _post_core(stack, headers, frames)
    assert (status, body["error"]["code"]) == (401, "invalid_hop_credential")
    assert len(media.received) == 1


def test_a_whole_body_credential_cannot_carry_an_upload(stack: Stack) -> None:
    data = b"".join(multipart_parts(1024))
    key = hop.HopKey(stack.env["INTERLOCK_HOP_SECRET"].encode())
    identity = hop.HopIdentity("acme", "default", "*", int(time.time() + 600))
    headers = {
        hop.HOP_HEADER: hop.sign(key, identity, "POST", PATH, "req_whole", data),
        hop.REQUEST_ID_HEADER: "req_whole",
        "content-type": "multipart/form-data; boundary=Bnd",
    }
    status, _ = _post_core(stack, headers, [data])
    assert status == 401
    # Nor can a streamed credential carry a JSON request.
    streamed, _seed = hop.sign_streamed(key, identity, "POST", "/v1/chat/completions", "req_s")
    chat = {hop.HOP_HEADER: streamed, hop.REQUEST_ID_HEADER: "req_s"}
    connection = http.client.HTTPConnection("127.0.0.1", stack.core_port, timeout=30)
    try:
        body = b'{"model": "whisper", "messages": [{"role": "user", "content": "hi"}]}'
        connection.request(
            "POST", "/v1/chat/completions", body, {**chat, "content-type": "application/json"}
        )
        assert connection.getresponse().status == 401
    finally:
        connection.close()


# ---- failover, idempotency, temporary files --------------------------------------------------


def test_failover_resends_the_spooled_file(stack: Stack, media: FakeOpenAIMedia) -> None:
    audio = make_wav(3 * MiB / 16_000)  # past the spool's memory part: a temporary file
    media.reset()
    answer = client(stack, timeout=60).audio.transcriptions.with_raw_response.create(
        model="whisper-failover", file=("f.wav", audio)
    )
    assert answer.parse().text == TEXT
    assert answer.headers["x-interlock-provider"] == "groq"
    first, second = media.received
    assert audio in first.body and audio in second.body
    assert b"whisper-fail-500\r\n" in first.body and b"whisper-large-v3\r\n" in second.body
    assert spool_fds(pids(stack)[0]) == []


def test_sdk_retry_with_the_same_idempotency_key_replays(
    stack: Stack, media: FakeOpenAIMedia
) -> None:
    boundaries: list[str] = []

    def seen(request: httpx2.Request) -> None:
        boundaries.append(request.headers["content-type"].partition("boundary=")[2])

    http = httpx2.Client(event_hooks={"request": [seen]})
    sdk = client(stack, http_client=http)
    audio = make_wav(2.0)
    media.reset()
    answers = [
        sdk.audio.transcriptions.with_raw_response.create(
            model="whisper",
            file=("r.wav", audio),
            extra_headers={"Idempotency-Key": "upload-retry-1"},
        )
        for _ in range(2)
    ]
    assert boundaries[0] != boundaries[1]  # each attempt draws its own boundary
    assert [a.parse().text for a in answers] == [TEXT, TEXT]
    assert answers[1].headers["x-interlock-idempotent-replay"] == "true"
    assert len(media.received) == 1  # the provider was called once
    with pytest.raises(openai.UnprocessableEntityError):  # another file: another body
        sdk.audio.transcriptions.create(
            model="whisper",
            file=("r.wav", make_wav(2.5)),
            extra_headers={"Idempotency-Key": "upload-retry-1"},
        )


def test_the_sdks_own_retry_of_an_upload_is_never_a_422(
    stack: Stack, media: FakeOpenAIMedia
) -> None:
    """The SDK gives up on a slow first attempt and retries by itself, with the caller's
    Idempotency-Key (openai-python sends none of its own) and a new multipart boundary: it
    gets its transcript, not a 422."""
    boundaries: list[str] = []
    keys: list[str] = []

    def seen(request: httpx2.Request) -> None:
        boundaries.append(request.headers["content-type"].partition("boundary=")[2])
        keys.append(request.headers["idempotency-key"])

    http = httpx2.Client(event_hooks={"request": [seen]})
    sdk = client(stack, http_client=http, timeout=0.8, max_retries=1)
    media.reset()
    answer = sdk.audio.transcriptions.create(
        model="whisper-slow",
        file=("s.wav", make_wav(1.0)),
        extra_headers={"Idempotency-Key": "upload-auto-retry"},
    )
    assert answer.text == TEXT
    assert len(boundaries) == 2 and boundaries[0] != boundaries[1]
    assert keys == ["upload-auto-retry"] * 2


def test_temporary_files_go_on_every_path(stack: Stack, spool_dir: Path) -> None:
    core = pids(stack)[0]
    with pytest.raises(openai.APIStatusError):  # the provider fails
        client(stack).audio.transcriptions.create(
            model="whisper-broken", file=("b.wav", make_wav(3 * MiB / 16_000))
        )
    assert spool_fds(core) == []
    # The client leaves mid-upload: the core holds a spool file until the cut reaches it.
    sock = sockets.connect(stack.edge_port, timeout=10)
    head = (
        f"POST {PATH} HTTP/1.1\r\nhost: edge\r\nauthorization: Bearer {stack.token()}\r\n"
        "content-type: multipart/form-data; boundary=Bnd\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    sock.sendall(head.encode())
    for part in list(multipart_parts(8 * MiB))[:-1]:
        sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
    _eventually(lambda: len(spool_fds(core)) == 1)  # spooling, in an unlinked file
    assert [p.name for p in spool_dir.iterdir()] == []  # never visible by name
    sock.close()
    _eventually(lambda: spool_fds(core) == [])


def test_a_file_before_its_model_is_routed_and_checked_by_the_core(
    stack: Stack, media: FakeOpenAIMedia
) -> None:
    """curl -F file=@... -F model=...: the edge does not wait for the file to find the model;
    the core still applies the token's model allow-list."""
    audio = make_wav(1.0)
    raw = (
        b'--Bnd\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        + audio
        + b'\r\n--Bnd\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper\r\n--Bnd--\r\n'
    )
    media.reset()
    status, body = _chunked(
        stack.edge_url, stack.token(), iter([raw]), "multipart/form-data; boundary=Bnd"
    )
    assert (status, body["text"]) == (200, TEXT)
    status, body = _chunked(
        stack.edge_url,
        stack.token(models=["other-*"]),
        iter([raw]),
        "multipart/form-data; boundary=Bnd",
    )
    assert (status, body["error"]["param"]) == (403, "model")
    assert len(media.received) == 1
