"""The media APIs' pure parts: the in-place multipart reader (checked against the stdlib's
MIME parser), recording lengths, image items, Imagen's aspect ratios, and prices per image and
per second through the catalogue's Pricing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.api.audio.duration import ASSUMED_BYTES_PER_SECOND, estimate_seconds, wav_seconds
from core.api.audio.request import validate_speech, validate_transcription
from core.api.audio.spool import Spool
from core.api.audio.upload import Upload
from core.api.images.request import validate_images
from core.providers.adapters.base import Target
from core.providers.adapters.gemini.images import aspect_ratio
from core.providers.adapters.media import image_item
from core.providers.adapters.openai_media import api_url
from core.spend.pricing import CataloguePricing
from core.spend.usage import UsageSplit
from shared import multipart
from shared.config import ProviderConfig
from shared.config_prices import PricesConfig
from shared.errors import GatewayError, ProviderError
from shared.multipart_stream import PartScanner, canonical
from tests.support.fake_media import make_wav, read_form
from tests.support.providers import provider_of

TYPE = "multipart/form-data; boundary=b0undary"


def upload(raw: bytes) -> Upload:
    """A body as the core holds it once read: scanned, and spooled (in memory, this small)."""
    scanner = PartScanner(b"b0undary")
    scanner.feed(raw)
    parts = scanner.finish()
    spool = Spool()
    asyncio.run(spool.write(raw))
    return Upload(spool, parts, TYPE, canonical(parts))


def body(*parts: tuple[str, str | None, bytes]) -> bytes:
    out = b""
    for name, filename, content in parts:
        extra = f'; filename="{filename}"' if filename else ""
        head = f'--b0undary\r\nContent-Disposition: form-data; name="{name}"{extra}\r\n'
        if filename:
            head += "Content-Type: audio/wav\r\n"
        out += head.encode() + b"\r\n" + content + b"\r\n"
    return out + b"--b0undary--\r\n"


async def _joined(pieces: AsyncIterator[bytes]) -> bytes:
    return b"".join([piece async for piece in pieces])


def test_multipart_parts_are_offsets_and_splice_stays_valid() -> None:
    audio = b"RIFF\r\n--b0und\r\nnot a boundary" + bytes(100)
    raw = body(("model", None, b"whisper"), ("file", "a.wav", audio), ("language", None, b"en"))
    parts = multipart.parse(raw, multipart.boundary_of(TYPE))
    assert [(p.name, p.filename) for p in parts] == [
        ("model", None),
        ("file", "a.wav"),
        ("language", None),
    ]
    assert raw[parts[1].start : parts[1].end] == audio
    relayed = validate_transcription(upload(raw)).relayed("whisper-large-v3")
    spliced = asyncio.run(_joined(relayed.open()))
    assert len(spliced) == relayed.size
    assert read_form(TYPE, spliced) == {
        "model": b"whisper-large-v3",
        "file": audio,
        "language": b"en",
    }


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b"", TYPE),
        (b"--b0undary\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b0undary--", TYPE),
        (b'--b0undary\r\nContent-Disposition: form-data; name="a"\r\n\r\nno end', TYPE),
        (b"--b0undary\r\nno headers end", TYPE),
        (body(("model", None, b"m")), "application/json"),
        (body(("model", None, b"m")), "multipart/form-data"),
    ],
)
def test_malformed_multipart_is_a_400_naming_file(raw: bytes, content_type: str) -> None:
    with pytest.raises(GatewayError) as refused:
        multipart.parse(raw, multipart.boundary_of(content_type))
    assert (refused.value.status, refused.value.param) == (400, "file")


def test_transcription_request_fields_and_refusals() -> None:
    raw = body(("file", "a.wav", b"x"), ("model", None, b"w"), ("response_format", None, b"srt"))
    request = validate_transcription(upload(raw))
    assert (request.model, request.response_format, request.audio_bytes) == ("w", "srt", 1)
    assert request.payload == {"model": "w", "response_format": "srt"}
    for extra, param in [
        (("temperature", None, b"2"), "temperature"),
        (("temperature", None, b"hot"), "temperature"),
        (("file", "b.wav", b"y"), "file"),
        (("model", None, b"other"), "model"),
    ]:
        with pytest.raises(GatewayError) as refused:
            validate_transcription(
                upload(body(("file", "a.wav", b"x"), ("model", None, b"w"), extra))
            )
        assert refused.value.param == param


def test_wav_length_is_exact_and_other_formats_are_estimated() -> None:
    audio = make_wav(1.5, 16000, 2)
    assert wav_seconds(audio, len(audio)) == 1.5
    raw = b"prefix" + audio + b"suffix"
    assert estimate_seconds(raw[6:], len(audio)) == 1.5
    mp3 = b"\xff\xfb" + bytes(ASSUMED_BYTES_PER_SECOND * 3 - 2)
    assert estimate_seconds(mp3[:4096], len(mp3)) == 3.0
    assert wav_seconds(b"RIFF\x00\x00\x00\x00WAVEdata\x10\x00\x00\x00", 20) is None  # no fmt


def test_image_items_and_aspect_ratios() -> None:
    assert image_item("aGVsbG8=", False) == {"b64_json": "aGVsbG8="}
    assert image_item("aGVsbG8=", True, "image/webp") == {"url": "data:image/webp;base64,aGVsbG8="}
    for bad in (None, "", "<html>"):
        with pytest.raises(ProviderError):
            image_item(bad, False)
    assert [aspect_ratio(s) for s in [(1024, 1024), (1792, 1024), (1024, 1792), (1536, 1024)]] == [
        "1:1",
        "16:9",
        "9:16",
        "4:3",
    ]


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"model": "m", "prompt": " "}, "prompt"),
        ({"model": "m", "prompt": "x", "n": 0}, "n"),
        ({"model": "m", "prompt": "x", "n": True}, "n"),
        ({"model": "m", "prompt": "x", "quality": "ultra"}, "quality"),
        ({"model": "m", "prompt": "x", "size": "1024"}, "size"),
        ({"prompt": "x"}, "model"),
    ],
)
def test_image_validation_names_the_field(payload: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as refused:
        validate_images(payload)
    assert refused.value.param == param


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"model": "m", "voice": "alloy"}, "input"),
        ({"model": "m", "input": "x" * 4097, "voice": "alloy"}, "input"),
        ({"model": "m", "input": "x"}, "voice"),
        ({"model": "m", "input": "x", "voice": "a", "response_format": "ogg"}, "response_format"),
        ({"model": "m", "input": "x", "voice": "a", "speed": 5}, "speed"),
        ({"model": "m", "input": "x", "voice": "a", "stream_format": "sse"}, "stream_format"),
    ],
)
def test_speech_validation_names_the_field(payload: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as refused:
        validate_speech(payload)
    assert refused.value.param == param


def openai_target(model: str) -> Target:
    config = ProviderConfig("openai", "openai", None, ("k",), {}, None, True, {})
    return Target(provider_of(config), model, "k")


def test_prices_per_image_and_per_second() -> None:
    pricing = CataloguePricing(PricesConfig())
    dalle = openai_target("dall-e-3")
    cost = pricing.cost(dalle, UsageSplit.from_usage({"images": 3}))
    assert (cost.micros, cost.unpriced) == (120_000, False)
    whisper = openai_target("whisper-1")
    assert pricing.cost(whisper, UsageSplit.from_usage({"seconds": 90.5})).micros == 9050
    assert UsageSplit.from_usage({"seconds": True}).audio_ms == 0
    assert UsageSplit.from_usage({"seconds": -1}).audio_ms == 0
    tokens = pricing.cost(whisper, UsageSplit.from_usage({"prompt_tokens": 1000}))
    assert tokens.micros == 0  # whisper-1 bills seconds, never tokens


def test_media_urls_take_the_chat_urls_place() -> None:
    deployment = "https://r.openai.azure.com/openai/deployments/d1/chat/completions?api-version=v"
    assert api_url(deployment, "/audio/transcriptions") == (
        "https://r.openai.azure.com/openai/deployments/d1/audio/transcriptions?api-version=v"
    )
    assert api_url("https://api.groq.com/openai/v1/chat/completions", "/audio/speech") == (
        "https://api.groq.com/openai/v1/audio/speech"
    )
