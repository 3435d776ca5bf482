"""Images and audio through a real edge and core with the official OpenAI SDK, against the
wire-faithful fakes of tests/support/fake_media.py: OpenAI (preset openai, so only its image
and audio model families are routed there), Azure's v1 path, Groq, Imagen on AI Studio and
Titan/Nova Canvas on Bedrock (SigV4 verified). Failover, routes that skip targets that cannot
serve, the oversized upload's 413 and the priced ledger rows are checked end to end.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from tests.support import raw
from tests.support.fake_bedrock import ACCESS_KEY, SECRET_KEY, SESSION_TOKEN
from tests.support.fake_media import (
    AUDIO_CHUNK,
    PNG,
    SPEECH_CHUNKS,
    TEXT,
    FakeBedrockImages,
    FakeGeminiImages,
    FakeOpenAIMedia,
    make_wav,
)
from tests.support.ledger_load import sqlite_rows
from tests.support.prom import scrape
from tests.support.stack import Stack

CANVAS = "amazon.nova-canvas-v1:0"
IMAGEN = "imagen-4.0-generate-001"


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeOpenAIMedia, FakeGeminiImages, FakeBedrockImages]]:
    servers = (FakeOpenAIMedia(), FakeGeminiImages(), FakeBedrockImages())
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def media(fakes: tuple[Any, ...]) -> FakeOpenAIMedia:
    return fakes[0]  # type: ignore[no-any-return]


def _providers(fakes: tuple[FakeOpenAIMedia, FakeGeminiImages, FakeBedrockImages]) -> Any:
    media, gemini, bedrock = fakes
    aws = {
        "region": "us-east-1",
        "access_key_id": ACCESS_KEY,
        "secret_access_key": SECRET_KEY,
        "session_token": SESSION_TOKEN,
    }
    oai = {"kind": "openai", "base_url": f"{media.url}/v1", "api_key": media.api_key}
    return {
        "oai": {**oai, "options": {"preset": "openai"}},
        "groq": {**oai, "options": {"preset": "groq"}},
        "azure": {"kind": "azure", "base_url": media.url, "api_key": media.azure_key},
        "gemini": {"kind": "gemini", "base_url": gemini.url, "api_key": gemini.api_key},
        "vertex": {
            "kind": "gemini",
            "base_url": gemini.url,
            "api_key": gemini.token,
            "options": {"vertex": {"project": gemini.project, "location": gemini.location}},
        },
        "bedrock": {"kind": "bedrock", "base_url": bedrock.url, "options": aws},
    }


def _targets(*pairs: tuple[str, str]) -> dict[str, Any]:
    return {"targets": [{"provider": p, "model": m} for p, m in pairs]}


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    fakes: tuple[FakeOpenAIMedia, FakeGeminiImages, FakeBedrockImages],
) -> Iterator[Stack]:
    models = {
        "gpt-image": {"provider": "oai", "model": "gpt-image-1"},
        "dalle": {"provider": "oai", "model": "dall-e-3"},
        "imagen": {"provider": "gemini", "model": IMAGEN},
        "canvas": {"provider": "bedrock", "model": CANVAS},
        "vertex-imagen": {"provider": "vertex", "model": IMAGEN},
        "image-failover": _targets(("oai", "gpt-image-fail-500"), ("gemini", IMAGEN)),
        "mixed": _targets(("oai", "gpt-4o"), ("gemini", "gemini-2.5-flash"), ("bedrock", CANVAS)),
        "chat-only": _targets(("oai", "gpt-4o"), ("gemini", "gemini-2.5-flash")),
        "tts": {"provider": "oai", "model": "tts-1"},
        "tts-failover": _targets(("oai", "tts-fail-500"), ("azure", "tts-deployment")),
        "tts-cut": {"provider": "oai", "model": "tts-cut"},
        "whisper": {"provider": "oai", "model": "whisper-1"},
        "transcribe": {"provider": "oai", "model": "gpt-4o-transcribe"},
        "whisper-failover": _targets(("oai", "whisper-fail-500"), ("groq", "whisper-large-v3")),
    }
    overrides = {
        "providers": _providers(fakes),
        "models": models,
        "ledger": {"flush_interval": "50ms"},
    }
    running = Stack(tmp_path_factory.mktemp("media-stack"), overrides).start()
    yield running
    running.stop()


def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.edge_url}/v1", api_key=stack.token(), max_retries=0)


def data_url_bytes(url: str) -> bytes:
    head, _, data = url.partition(",")
    assert head == "data:image/png;base64"
    return base64.b64decode(data)


# ---- images --------------------------------------------------------------------------------


def test_gpt_image_base64_and_data_url(stack: Stack, media: FakeOpenAIMedia) -> None:
    media.reset()
    sdk = client(stack)
    response = sdk.images.with_raw_response.generate(model="gpt-image", prompt="a fox", n=2)
    images = response.parse()
    assert [base64.b64decode(item.b64_json or "") for item in images.data] == [PNG, PNG]
    assert images.usage is not None and images.usage.output_tokens == 8320
    assert response.headers["x-interlock-provider"] == "oai"
    # (50 x $5 + 8320 x $40) per million tokens: the token-billed model, priced per token.
    assert response.headers["x-interlock-cost"] == "0.333050"
    as_url = sdk.images.generate(model="gpt-image", prompt="a fox", response_format="url")
    assert data_url_bytes(as_url.data[0].url or "") == PNG  # bytes-only host: a data: URL
    jpeg = sdk.images.generate(
        model="gpt-image", prompt="a fox", response_format="url", output_format="jpeg"
    )
    assert (jpeg.data[0].url or "").startswith("data:image/jpeg;base64,")
    sent = [r.json for r in media.received]
    assert sent[0] == {"model": "gpt-image-1", "prompt": "a fox", "n": 2}
    assert "response_format" not in sent[1]  # gpt-image-1 refuses it upstream


def test_dalle_hosted_url_and_per_image_price(stack: Stack, media: FakeOpenAIMedia) -> None:
    sdk = client(stack)
    response = sdk.images.with_raw_response.generate(model="dalle", prompt="a boat")
    item = response.parse().data[0]
    assert item.url is not None and item.url.startswith("https://")
    assert item.revised_prompt == "A picture: a boat"
    assert response.headers["x-interlock-cost"] == "0.040000"  # dall-e-3: $0.04 an image
    b64 = sdk.images.generate(model="dalle", prompt="a boat", response_format="b64_json")
    assert base64.b64decode(b64.data[0].b64_json or "") == PNG


def test_imagen_predict_with_aspect_ratio(stack: Stack, fakes: tuple[Any, ...]) -> None:
    gemini: FakeGeminiImages = fakes[1]
    gemini.reset()
    response = client(stack).images.with_raw_response.generate(
        model="imagen", prompt="a lighthouse", n=2, size="1792x1024"
    )
    images = response.parse()
    assert len(images.data) == 2 and images.created > 0
    assert base64.b64decode(images.data[1].b64_json or "") == PNG
    assert response.headers["x-interlock-cost"] == "0.080000"
    [sent] = gemini.received
    assert sent.path.endswith(f"/models/{IMAGEN}:predict")
    assert sent.json == {
        "instances": [{"prompt": "a lighthouse"}],
        "parameters": {"sampleCount": 2, "aspectRatio": "16:9"},
    }


def test_imagen_on_vertex(stack: Stack, fakes: tuple[Any, ...]) -> None:
    gemini: FakeGeminiImages = fakes[1]
    gemini.reset()
    response = client(stack).images.generate(model="vertex-imagen", prompt="a bridge")
    assert base64.b64decode(response.data[0].b64_json or "") == PNG
    [sent] = gemini.received
    assert sent.path.startswith("/v1/projects/proj-1/locations/us-central1/publishers/google/")
    assert sent.headers["Authorization"] == f"Bearer {gemini.token}"


def test_bedrock_canvas_signed_invoke(stack: Stack, fakes: tuple[Any, ...]) -> None:
    bedrock: FakeBedrockImages = fakes[2]
    bedrock.reset()
    response = client(stack).images.generate(
        model="canvas", prompt="a cat", size="1024x1024", quality="hd", response_format="url"
    )
    assert data_url_bytes(response.data[0].url or "") == PNG
    [sent] = bedrock.received
    assert sent.path == f"/model/{CANVAS}/invoke"
    assert sent.json["imageGenerationConfig"] == {
        "numberOfImages": 1,
        "width": 1024,
        "height": 1024,
        "quality": "premium",
    }
    assert bedrock.rejected == []  # SigV4 verified over the bytes it got


def test_image_failover_after_a_500(stack: Stack) -> None:
    response = client(stack).images.with_raw_response.generate(
        model="image-failover", prompt="a tree"
    )
    assert response.headers["x-interlock-provider"] == "gemini"
    assert response.headers["x-interlock-failovers"] == "1"


def test_routes_skip_targets_that_make_no_images(stack: Stack) -> None:
    response = client(stack).images.with_raw_response.generate(model="mixed", prompt="a hill")
    assert response.headers["x-interlock-provider"] == "bedrock"
    assert response.headers["x-interlock-attempts"] == "1"  # chat models never tried
    with pytest.raises(openai.BadRequestError) as refused:
        client(stack).images.generate(model="chat-only", prompt="a hill")
    assert refused.value.status_code == 400
    assert refused.value.body["param"] == "model"  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "dalle"}, "prompt"),
        ({"model": "dalle", "prompt": "x", "n": 11}, "n"),
        ({"model": "dalle", "prompt": "x", "size": "big"}, "size"),
        ({"model": "dalle", "prompt": "x", "response_format": "gif"}, "response_format"),
        ({"model": "dalle", "prompt": "x", "stream": True}, "stream"),
        ({"model": "canvas", "prompt": "x", "n": 6}, "n"),
    ],
)
def test_image_requests_refused_naming_the_field(
    stack: Stack, body: dict[str, Any], param: str
) -> None:
    answer = raw.post(f"{stack.edge_url}/v1/images/generations", body, stack.token())
    assert answer.status == 400
    assert answer.json()["error"]["param"] == param


# ---- speech --------------------------------------------------------------------------------


def test_speech_streams_audio_bytes(stack: Stack, media: FakeOpenAIMedia) -> None:
    media.reset()
    with client(stack).audio.speech.with_streaming_response.create(
        model="tts", voice="alloy", input="Hello there"
    ) as response:
        assert response.headers["content-type"] == "audio/mpeg"
        assert response.headers["x-interlock-provider"] == "oai"
        chunks = list(response.iter_bytes())
    assert b"".join(chunks) == AUDIO_CHUNK * SPEECH_CHUNKS
    [sent] = media.received
    assert sent.json == {
        "model": "tts-1",
        "voice": "alloy",
        "input": "Hello there",
        "response_format": "mp3",  # the default, said explicitly
    }


def test_speech_failover_to_azure(stack: Stack, media: FakeOpenAIMedia) -> None:
    media.reset()
    with client(stack).audio.speech.with_streaming_response.create(
        model="tts-failover", voice="nova", input="Hi", response_format="wav"
    ) as response:
        assert response.headers["content-type"] == "audio/wav"
        assert response.headers["x-interlock-provider"] == "azure"
        assert response.read() == AUDIO_CHUNK * SPEECH_CHUNKS
    assert [r.path for r in media.received] == ["/v1/audio/speech", "/openai/v1/audio/speech"]


def test_speech_cut_after_first_bytes_is_an_error(stack: Stack) -> None:
    # Nested: only the read may raise; the response itself must open with a 200.
    with client(stack).audio.speech.with_streaming_response.create(
        model="tts-cut", voice="alloy", input="Hi"
    ) as response:
        assert response.status_code == 200
        with pytest.raises(httpx2.HTTPError):  # never a clean, short answer
            response.read()
    # Cut on purpose (shared.cut_stream): no traceback in either tier's log, as for a bug.
    assert "unhandled error" not in stack.read_logs()


# ---- transcriptions ------------------------------------------------------------------------


def test_transcription_json_with_duration(stack: Stack, media: FakeOpenAIMedia) -> None:
    media.reset()
    audio = make_wav(2.0)
    sdk = client(stack)
    response = sdk.audio.transcriptions.with_raw_response.create(
        model="whisper", file=("hello.wav", audio, "audio/wav"), language="en"
    )
    assert response.parse().text == TEXT
    assert response.headers["x-interlock-cost"] == "0.000200"  # 2 s at $0.006 a minute
    [sent] = media.received
    assert b'name="model"\r\n\r\nwhisper-1\r\n' in sent.body  # the target's model spliced in
    assert audio in sent.body  # the file relayed byte for byte
    verbose = sdk.audio.transcriptions.create(
        model="whisper", file=("hello.wav", audio), response_format="verbose_json"
    )
    assert verbose.duration == 2.0


def test_transcription_text_is_estimated_from_the_wav(stack: Stack) -> None:
    response = client(stack).audio.transcriptions.with_raw_response.create(
        model="whisper", file=("a.wav", make_wav(3.0)), response_format="text"
    )
    assert response.parse().strip() == TEXT
    assert response.headers["x-interlock-usage-estimated"] == "true"
    assert response.headers["x-interlock-cost"] == "0.000300"  # 3 s from the WAV header


def test_transcription_tokens_and_failover_to_groq(stack: Stack) -> None:
    sdk = client(stack)
    tokens = sdk.audio.transcriptions.with_raw_response.create(
        model="transcribe", file=("a.wav", make_wav(1.0))
    )
    assert tokens.headers["x-interlock-cost"] == "0.000534"  # 14 x $6 + 45 x $10 per million
    failover = sdk.audio.transcriptions.with_raw_response.create(
        model="whisper-failover", file=("a.wav", make_wav(1.0))
    )
    assert failover.parse().text == TEXT
    assert failover.headers["x-interlock-provider"] == "groq"
    assert failover.headers["x-interlock-failovers"] == "1"


def test_oversized_upload_is_a_413_naming_file(stack: Stack, media: FakeOpenAIMedia) -> None:
    media.reset()
    with pytest.raises(openai.APIStatusError) as refused:
        client(stack).audio.transcriptions.create(
            model="whisper", file=("big.wav", bytes(26 * 1024 * 1024))
        )
    assert refused.value.status_code == 413
    assert refused.value.body["param"] == "file"  # type: ignore[index]
    assert media.received == []


def form(*parts: tuple[str, str | None, bytes]) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body of (name, filename, content) parts, and its content type."""
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--XyZ\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
    return out + b"--XyZ--\r\n", {"content-type": "multipart/form-data; boundary=XyZ"}


def test_transcription_refusals_name_the_field(stack: Stack) -> None:
    url, token = f"{stack.edge_url}/v1/audio/transcriptions", stack.token()
    cases = [
        (form(("model", None, b"whisper")), "file"),
        (form(("file", "a.wav", make_wav(0.1))), "model"),
        (
            form(("model", None, b"whisper"), ("file", "a.wav", b"x"), ("stream", None, b"true")),
            "stream",
        ),
        (
            form(
                ("model", None, b"whisper"),
                ("file", "a.wav", b"x"),
                ("response_format", None, b"xml"),
            ),
            "response_format",
        ),
        ((b"--XyZ\r\nbroken", {"content-type": "multipart/form-data; boundary=XyZ"}), "file"),
        # A second model (a host may read the last one) or a field sent as a file never
        # reaches the host: the gateway routed, checked and billed the first.
        (
            form(("model", None, b"whisper"), ("model", None, b"gpt-4o"), ("file", "a.wav", b"x")),
            "model",
        ),
        (
            form(("model", None, b"whisper"), ("model", "b.wav", b"\x80"), ("file", "a.wav", b"x")),
            "model",
        ),
        (
            form(
                ("model", None, b"whisper"),
                ("file", "a.wav", b"x"),
                ("language", "c.txt", b"en"),
            ),
            "language",
        ),
        ((b'{"model": "whisper"}', {}), "file"),
    ]
    for (body, headers), param in cases:
        answer = raw.post(url, body, token, headers)
        assert answer.status == 400, (param, answer.body)
        assert answer.json()["error"]["param"] == param


# ---- the ledger ----------------------------------------------------------------------------


def test_ledger_rows_are_priced_per_image_and_per_second(stack: Stack, tmp_path: Path) -> None:
    sdk = client(stack)
    sdk.images.generate(model="dalle", prompt="ledger")
    sdk.audio.transcriptions.create(model="whisper", file=("a.wav", make_wav(4.0)))
    path = stack.workdir / "state" / "ledger.sqlite3"
    rows = sqlite_rows(path, 1)
    by_model: dict[str, list[Any]] = {}
    for row in sqlite_rows(path, len(rows) + 2):
        by_model.setdefault(row["served_model"], []).append(row)
    dalle, whisper = by_model["dall-e-3"][-1], by_model["whisper-1"][-1]
    assert (dalle["outcome"], dalle["cost_micros"]) == ("ok", 40_000)
    assert str(dalle["price_version"]).startswith("openai/dall-e-3@")
    assert (whisper["outcome"], whisper["cost_micros"]) == ("ok", 400)  # 4 s x 100 micro-$
    assert str(whisper["price_version"]).startswith("openai/whisper-1@")


def test_metrics_name_the_generate_content_operation(stack: Stack) -> None:
    def count() -> float:
        found = scrape(stack.core_admin_url)
        return sum(
            v
            for (name, labels), v in found.items()
            if name == "interlock_requests_total"
            and dict(labels).get("gen_ai_operation_name") == "generate_content"
        )

    before = count()
    client(stack).images.generate(model="dalle", prompt="metrics")
    client(stack).audio.transcriptions.create(model="whisper", file=("a.wav", make_wav(0.5)))
    assert count() == before + 2
