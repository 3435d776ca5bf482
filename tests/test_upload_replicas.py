"""An upload and the edge's core replicas: another replica may take it only before any byte
of its body was sent (the core's `100 Continue` comes first, edge/corecall.py). A replica that
refuses the connection is skipped, and the upload, read from the client only as it is sent,
reaches the next one whole."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.support.fake_media import TEXT, FakeOpenAIMedia, make_wav
from tests.support.net import free_port
from tests.support.stack import Stack


@pytest.fixture(scope="module")
def media() -> Iterator[FakeOpenAIMedia]:
    server = FakeOpenAIMedia()
    server.start()
    yield server
    server.stop()


def test_an_upload_skips_a_replica_that_never_took_it(
    tmp_path_factory: pytest.TempPathFactory, media: FakeOpenAIMedia
) -> None:
    workdir = tmp_path_factory.mktemp("upload-replicas")
    core_port = free_port()
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    overrides = {
        "providers": {
            "oai": {
                "kind": "openai",
                "base_url": f"{media.url}/v1",
                "api_key": media.api_key,
                "options": {"preset": "openai"},
            }
        },
        "models": {"whisper": {"provider": "oai", "model": "whisper-1"}},
        "edge": {"pools": {"default": [dead, f"http://127.0.0.1:{core_port}"]}},
    }
    stack = Stack(workdir, overrides, core_port=core_port).start()
    try:
        sdk = openai.OpenAI(
            base_url=f"{stack.edge_url}/v1", api_key=stack.token(), max_retries=0, timeout=30
        )
        audio = make_wav(2 * 1024 * 1024 / 16_000)  # 2 MiB: many frames, a spool file
        media.reset()
        for _ in range(3):  # round-robin: the dead replica comes first at least once
            assert (
                sdk.audio.transcriptions.create(model="whisper", file=("a.wav", audio)).text == TEXT
            )
        assert len(media.received) == 3
        assert all(audio in sent.body for sent in media.received)
    finally:
        stack.stop()
