"""No client input makes the media APIs answer a 5xx or leave the OpenAI error envelope:
mutated image and speech requests (tests/support/fuzz.py's mutations of valid seeds) and
mutated multipart uploads, through a real edge and core to the media fakes. A 200 speech
answer is audio, so only its status is checked; every error must be the envelope. The
gateway's logs must show no validation gap (the translation backstop, an unhandled error)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tests.support import raw
from tests.support.fake_media import make_wav
from tests.support.fuzz import Answer, Client, envelope_problem, mutated
from tests.support.stack import Stack
from tests.test_media_e2e import CANVAS, IMAGEN, _providers, fakes, form

__all__ = ["fakes"]  # the fixture, shared with the end-to-end tests

FUZZ_SEED = int(os.environ.get("INTERLOCK_FUZZ_SEED", "1616"))
CASES = 150
IMAGE_SEEDS: list[dict[str, Any]] = [
    {"model": m, "prompt": "a fox", "n": 1, "size": "1024x1024", "response_format": f}
    for m in ("gpt-image", "dalle", "imagen", "canvas")
    for f in ("url", "b64_json")
]
SPEECH_SEEDS: list[dict[str, Any]] = [
    {"model": "tts", "input": "Hello", "voice": "alloy", "response_format": "mp3", "speed": 1.0}
]
GAP_NEEDLES = ("could not translate a request", "unhandled error", "Traceback")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, fakes: Any) -> Iterator[Stack]:
    models = {
        "gpt-image": {"provider": "oai", "model": "gpt-image-1"},
        "dalle": {"provider": "oai", "model": "dall-e-3"},
        "imagen": {"provider": "gemini", "model": IMAGEN},
        "canvas": {"provider": "bedrock", "model": CANVAS},
        "tts": {"provider": "oai", "model": "tts-1"},
        "whisper": {"provider": "oai", "model": "whisper-1"},
    }
    overrides = {"providers": _providers(fakes), "models": models}
    running = Stack(tmp_path_factory.mktemp("media-fuzz"), overrides).start()
    yield running
    running.stop()


def _gaps(stack: Stack) -> list[str]:
    return [line for line in stack.read_logs().splitlines() if any(n in line for n in GAP_NEEDLES)]


def _check(path: str, answer: Answer, body: bytes) -> None:
    if answer.status == 200 and not answer.content_type.startswith("application/json"):
        return  # audio bytes
    problem = envelope_problem(answer, "openai")
    assert problem is None, (
        f"{path}: {problem} (seed {FUZZ_SEED}) {answer.body[:300]!r} {body[:500]!r}"
    )


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("path", "seeds"),
    [("/v1/images/generations", IMAGE_SEEDS), ("/v1/audio/speech", SPEECH_SEEDS)],
)
def test_fuzz_json_media_endpoints(stack: Stack, path: str, seeds: list[dict[str, Any]]) -> None:
    client = Client(stack.edge_url, stack.token())
    ran = 0

    @seed(FUZZ_SEED)
    @settings(
        max_examples=CASES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(st.data())
    def case(data: st.DataObject) -> None:
        nonlocal ran
        body = orjson.dumps(data.draw(mutated(seeds), label="body"))
        if b"://" in body:
            return
        _check(path, client.post(path, body), body)
        ran += 1

    try:
        case()
    finally:
        client.close()
    assert ran >= CASES // 2
    assert not _gaps(stack)


FIELDS = ["model", "file", "language", "prompt", "response_format", "temperature", "stream", "x[]"]
VALUES = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"", b"whisper", b"json", b"text", b"2", b"-1", b"true", b"\xff\xfe", b"--"]),
)


@pytest.mark.timeout(300)
def test_fuzz_multipart_uploads(stack: Stack) -> None:
    url, token = f"{stack.edge_url}/v1/audio/transcriptions", stack.token()
    audio = make_wav(0.2)

    @seed(FUZZ_SEED)
    @settings(
        max_examples=CASES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(st.data())
    def case(data: st.DataObject) -> None:
        parts: list[tuple[str, str | None, bytes]] = [("model", None, b"whisper")]
        parts.append(("file", "a.wav", audio))
        for _ in range(data.draw(st.integers(1, 4))):
            name = data.draw(st.sampled_from(FIELDS))
            filename = data.draw(st.sampled_from([None, "b.wav", ""]))
            parts.insert(data.draw(st.integers(0, len(parts))), (name, filename, data.draw(VALUES)))
        if data.draw(st.booleans()):
            del parts[data.draw(st.integers(0, len(parts) - 1))]
        body, headers = form(*parts)
        cut = data.draw(st.integers(0, len(body)))
        if data.draw(st.integers(0, 5)) == 0:
            body = body[:cut]  # a truncated body
        answer = raw.post(url, body, token, headers)
        _check(
            "/v1/audio/transcriptions",
            Answer(answer.status, answer.headers.get("content-type", ""), answer.body),
            body,
        )

    case()
    assert not _gaps(stack)
