"""Uploads streamed end to end, never held whole: the official OpenAI SDK's
`audio.transcriptions.create` through a real edge and core (subprocesses on loopback) to the
wire-faithful fake of tests/support/fake_media.py.

Checked: a 30 MiB upload goes through while neither tier's resident memory grows by anything
near its size; the edge's limit is a 413 naming `file` and the limit, up front (Content-Length)
and mid-stream (chunked), and then no provider is called; the core's own limit likewise (the
framed body itself: tests/test_upload_frames_e2e.py); a failover
sends the spooled file again to the second provider; the SDK's retry with the same
Idempotency-Key (a new multipart boundary) is a replay, not a 422; and the spool's temporary
files are gone however the request ends (success, provider failure, client gone).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2
import openai
import pytest

from tests.support import sockets
from tests.support.fake_media import TEXT, FakeOpenAIMedia, make_wav
from tests.support.stack import Stack
from tests.support.uploads import (
    CORE_LIMIT,
    EDGE_LIMIT,
    PATH,
    MiB,
    PeakRss,
    chunked,
    client,
    eventually,
    multipart_parts,
    pids,
    spool_fds,
    upload_stack,
)


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
    running = upload_stack(tmp_path_factory.mktemp("upload-stack"), media, spool_dir)
    yield running
    running.stop()


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
    status, body = chunked(
        stack.edge_url,
        stack.token(),
        multipart_parts(EDGE_LIMIT + MiB),
        "multipart/form-data; boundary=Bnd",
    )
    assert status == 413, body
    # The body is over the core's (lower) limit too: whichever tier counts past its own first
    # answers (seen both ways on a loaded machine); either way nothing reached the provider.
    message = body["error"]["message"]
    assert body["error"]["param"] == "file" and (
        str(EDGE_LIMIT) in message or str(CORE_LIMIT) in message
    )
    assert media.received == []  # the core saw a body without its closing frame
    eventually(lambda: spool_fds(core) == [])
    assert "unhandled error" not in stack.read_logs()


def test_over_the_core_limit_is_a_413_naming_file(stack: Stack, media: FakeOpenAIMedia) -> None:
    media.reset()
    status, body = chunked(
        stack.edge_url,
        stack.token(),
        multipart_parts(CORE_LIMIT + MiB),
        "multipart/form-data; boundary=Bnd",
    )
    assert status == 413, body
    assert body["error"]["param"] == "file" and str(CORE_LIMIT) in body["error"]["message"]
    assert media.received == []


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
    eventually(lambda: len(spool_fds(core)) == 1)  # spooling, in an unlinked file
    assert [p.name for p in spool_dir.iterdir()] == []  # never visible by name
    sock.close()
    eventually(lambda: spool_fds(core) == [])


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
    status, body = chunked(
        stack.edge_url, stack.token(), iter([raw]), "multipart/form-data; boundary=Bnd"
    )
    assert (status, body["text"]) == (200, TEXT)
    status, body = chunked(
        stack.edge_url,
        stack.token(models=["other-*"]),
        iter([raw]),
        "multipart/form-data; boundary=Bnd",
    )
    assert (status, body["error"]["param"]) == (403, "model")
    assert len(media.received) == 1
