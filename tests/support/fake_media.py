"""Fake image and audio upstreams, built from the providers' documented formats.

OpenAI (and the Azure v1 path): POST /v1/images/generations, /v1/audio/speech,
/v1/audio/transcriptions. Like the real API: gpt-image-* refuse `response_format` and always
answer base64 with token usage; dall-e-3 takes n=1 only and answers a hosted `url` unless
b64_json is asked; speech streams audio in chunks (chunked transfer, `audio/mpeg` for mp3);
transcriptions read the multipart body with the stdlib's MIME parser (so a body the gateway
spliced must be valid multipart), measure a WAV upload with the stdlib `wave` module and answer
in the format asked (json with `usage` of type duration for whisper-1 or tokens for
gpt-4o-*-transcribe, verbose_json with `duration`, text/srt/vtt as text).
Imagen (FakeGeminiImages): `models/imagen-*:predict` answered with bytesBase64Encoded.
Titan Image / Nova Canvas (FakeBedrockImages): InvokeModel, SigV4 verified, the TEXT_IMAGE body
checked key by key, answered with `images`.

Scripted by model id: *fail-500* (a 500 before any byte), *cut* (speech: some audio, then
the connection drops), *slow-once* (transcriptions: the first call answers after 1.5 s),
throttle.<bedrock model> (429 ThrottlingException).
"""

from __future__ import annotations

import asyncio
import base64
import io
import re
import time
import wave
from email import policy
from email.parser import BytesParser
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web

from tests.support.fake_bedrock import FakeBedrock, aws_error
from tests.support.fake_gemini import FakeGemini, error_response
from tests.support.fake_server import FakeServer, Received

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
PNG_B64 = base64.b64encode(PNG).decode("ascii")
AUDIO_CHUNK = b"\xff\xfb\x90\x00" + bytes(1020)  # an MPEG frame header, then silence
SPEECH_CHUNKS = 6
IMAGE_PARAMS = {
    "model", "prompt", "n", "size", "quality", "response_format", "style", "user",
    "background", "moderation", "output_format", "output_compression",
}  # fmt: skip
SPEECH_PARAMS = {"model", "input", "voice", "response_format", "speed", "instructions"}


def openai_error(status: int, message: str, param: str | None = None) -> web.Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def read_form(content_type: str, raw: bytes) -> dict[str, bytes]:
    """A multipart/form-data body's parts by name, read by the stdlib's MIME parser (not the
    gateway's): a body the gateway spliced must be valid multipart to get through."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=policy.HTTP).parsebytes(head + raw)
    if not message.is_multipart() or message.defects:
        raise ValueError("not multipart/form-data")
    form: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            form[name] = payload
    return form


def make_wav(seconds: float, rate: int = 8000, channels: int = 1) -> bytes:
    """A real 16-bit PCM WAV file of silence, for the tests' uploads."""
    out = io.BytesIO()
    with wave.open(out, "wb") as audio:
        audio.setnchannels(channels)
        audio.setsampwidth(2)
        audio.setframerate(rate)
        audio.writeframes(bytes(int(seconds * rate) * 2 * channels))
    return out.getvalue()


def wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as audio:
        return float(audio.getnframes() / audio.getframerate())


class FakeOpenAIMedia(FakeServer):
    def __init__(self, api_key: str = "sk-media", azure_key: str = "azure-media") -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for prefix in ("/v1", "/openai/v1"):
            app.router.add_post(f"{prefix}/images/generations", self.images)
            app.router.add_post(f"{prefix}/audio/speech", self.speech)
            app.router.add_post(f"{prefix}/audio/transcriptions", self.transcriptions)
        super().__init__(app)
        self.api_key = api_key
        self.azure_key = azure_key

    def _denied(self, request: web.Request) -> web.Response | None:
        if request.path.startswith("/openai/"):
            if request.headers.get("api-key") != self.azure_key:
                return openai_error(401, "Access denied due to invalid subscription key.")
        elif request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return openai_error(401, "Incorrect API key provided.")
        return None

    async def _json(self, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        raw = await request.read()
        body = orjson.loads(raw)
        self.received.append(
            Received(request.method, request.path, dict(request.headers), raw, body)
        )
        self.calls[str(body.get("model"))] += 1
        return body, self._denied(request)

    async def images(self, request: web.Request) -> web.Response:
        body, denied = await self._json(request)
        if denied is not None:
            return denied
        model, n = body.get("model"), body.get("n") or 1
        unknown = sorted(set(body) - IMAGE_PARAMS)
        if unknown:
            return openai_error(400, f"Unknown parameter: '{unknown[0]}'.", unknown[0])
        if "fail-500" in str(model):
            return openai_error(500, "The server had an error while processing your request.")
        if not isinstance(body.get("prompt"), str):
            return openai_error(400, "Missing required parameter: 'prompt'.", "prompt")
        if str(model).startswith("gpt-image"):
            if "response_format" in body:
                return openai_error(400, "Unknown parameter: 'response_format'.", "response_format")
            data: list[dict[str, Any]] = [{"b64_json": PNG_B64} for _ in range(n)]
            usage = {
                "input_tokens": 50,
                "output_tokens": 4160 * n,
                "total_tokens": 50 + 4160 * n,
                "input_tokens_details": {"text_tokens": 50, "image_tokens": 0},
            }
            fmt = body.get("output_format") or "png"
            return _json(
                {"created": int(time.time()), "data": data, "output_format": fmt, "usage": usage}
            )
        if n != 1:
            return openai_error(400, "You must provide n=1 for this model.", "n")
        item: dict[str, Any] = {"revised_prompt": f"A picture: {body['prompt']}"}
        if body.get("response_format") == "b64_json":
            item["b64_json"] = PNG_B64
        else:
            item["url"] = "https://oaidalleapiprodscus.blob.core.windows.net/private/img.png"
        return _json({"created": int(time.time()), "data": [item]})

    async def speech(self, request: web.Request) -> web.StreamResponse:
        body, denied = await self._json(request)
        if denied is not None:
            return denied
        unknown = sorted(set(body) - SPEECH_PARAMS)
        if unknown:
            return openai_error(400, f"Unknown parameter: '{unknown[0]}'.", unknown[0])
        if "fail-500" in str(body.get("model")):
            return openai_error(500, "The server had an error while processing your request.")
        if not body.get("input") or not body.get("voice"):
            return openai_error(400, "Missing required parameter: 'voice'.", "voice")
        fmt = body.get("response_format", "mp3")
        response = web.StreamResponse(headers={"Content-Type": _AUDIO_TYPES[fmt]})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for index in range(SPEECH_CHUNKS):
            await response.write(AUDIO_CHUNK)
            await asyncio.sleep(0.01)
            if "cut" in str(body.get("model")) and index == 1:
                assert request.transport is not None
                request.transport.close()  # the connection drops mid-audio
                return response
        await response.write_eof()
        return response

    async def transcriptions(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.received.append(Received(request.method, request.path, dict(request.headers), raw))
        denied = self._denied(request)
        if denied is not None:
            return denied
        form = read_form(request.headers.get("Content-Type", ""), raw)
        model = str(form.get("model", b""), "utf-8")
        self.calls[model] += 1
        if "fail-500" in str(model):
            return openai_error(500, "The server had an error while processing your request.")
        if "slow-once" in model and self.calls[model] == 1:
            await asyncio.sleep(1.5)
        audio = form.get("file")
        if audio is None:
            return openai_error(400, "Missing required parameter: 'file'.", "file")
        try:
            seconds = wav_seconds(audio)
        except (wave.Error, EOFError):
            return openai_error(400, "Invalid file format.", "file")
        return _transcript(model, str(form.get("response_format", b"json"), "utf-8"), seconds)


_AUDIO_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
TEXT = "Hello from the fake transcriber."


def _json(body: dict[str, Any]) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def _transcript(model: str, fmt: str, seconds: float) -> web.Response:
    if fmt == "text":
        return web.Response(text=TEXT + "\n", content_type="text/plain")
    if fmt == "verbose_json":
        body: dict[str, Any] = {"task": "transcribe", "language": "english", "duration": seconds}
        body.update(text=TEXT, segments=[], usage={"type": "duration", "seconds": round(seconds)})
        return _json(body)
    if "transcribe" in model:
        usage: dict[str, Any] = {"type": "tokens", "input_tokens": 14, "output_tokens": 45}
        usage.update(total_tokens=59, input_token_details={"text_tokens": 0, "audio_tokens": 14})
    else:
        usage = {"type": "duration", "seconds": round(seconds)}
    return _json({"text": TEXT, "usage": usage})


_STUDIO_PREDICT = re.compile(r"^/v1beta/models/(imagen-[^/:]+):predict$")
_VERTEX_PREDICT = re.compile(
    r"^/(v1)/projects/([^/]+)/locations/([^/]+)/publishers/google/models/(imagen-[^/:]+):predict$"
)
_IMAGEN_PARAMETERS = {"sampleCount", "aspectRatio", "personGeneration", "imageSize"}
_ASPECTS = {"1:1", "3:4", "4:3", "9:16", "16:9"}


class FakeGeminiImages(FakeGemini):
    """The chat fake plus Imagen's predict on AI Studio and Vertex AI."""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        studio, vertex = _STUDIO_PREDICT.match(request.path), _VERTEX_PREDICT.match(request.path)
        if studio is None and vertex is None:
            return await super().handle(request)
        raw = await request.read()
        body = orjson.loads(raw)
        model = studio.group(1) if studio else vertex.group(4)  # type: ignore[union-attr]
        denied = self.admit(request, raw, body, model, vertex)
        if denied is not None:
            return denied
        instances, parameters = body.get("instances"), body.get("parameters", {})
        if set(body) - {"instances", "parameters"} or set(parameters) - _IMAGEN_PARAMETERS:
            return error_response(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        if not isinstance(instances, list) or len(instances) != 1 or "prompt" not in instances[0]:
            return error_response(400, "INVALID_ARGUMENT", "instances[0].prompt is required.")
        count = parameters.get("sampleCount", 4)
        if not 1 <= count <= 4 or parameters.get("aspectRatio", "1:1") not in _ASPECTS:
            return error_response(400, "INVALID_ARGUMENT", "Invalid sampleCount or aspectRatio.")
        predictions = [{"bytesBase64Encoded": PNG_B64, "mimeType": "image/png"}] * count
        return _json({"predictions": predictions})


_CANVAS_CONFIG = {"numberOfImages", "width", "height", "quality", "cfgScale", "seed"}


class FakeBedrockImages(FakeBedrock):
    """The Converse fake plus InvokeModel for Titan Image Generator and Nova Canvas."""

    async def invoke(self, request: web.Request) -> web.StreamResponse:
        encoded_model, _, operation = request.raw_path.removeprefix("/model/").rpartition("/")
        model = unquote(encoded_model)
        if operation != "invoke" or not ("titan-image" in model or "nova-canvas" in model):
            return await super().invoke(request)
        raw = await request.read()
        rejection = self._authorize(request, raw)
        if rejection is not None:
            return rejection
        body = orjson.loads(raw)
        self.received.append(
            Received(request.method, request.raw_path, dict(request.headers), raw, body)
        )
        self.calls[model] += 1
        if model.startswith("throttle."):
            return aws_error(429, "ThrottlingException", "Too many requests, please wait.")
        problem = _canvas_problem(body)
        if problem is not None:
            return aws_error(400, "ValidationException", problem)
        count = body["imageGenerationConfig"].get("numberOfImages", 1)
        return _json({"images": [PNG_B64] * count, "error": None})


def _canvas_problem(body: Any) -> str | None:
    if not isinstance(body, dict) or set(body) - {
        "taskType",
        "textToImageParams",
        "imageGenerationConfig",
    }:
        return "Malformed input request: extraneous key is not permitted"
    if body.get("taskType") != "TEXT_IMAGE":
        return "Malformed input request: taskType must be TEXT_IMAGE"
    params = body.get("textToImageParams")
    if not isinstance(params, dict) or not isinstance(params.get("text"), str):
        return "Malformed input request: textToImageParams.text is required"
    if len(params["text"]) > 1024:
        return "Malformed input request: text must be at most 1024 characters"
    config = body.get("imageGenerationConfig", {})
    if set(config) - _CANVAS_CONFIG:
        return "Malformed input request: extraneous key in imageGenerationConfig"
    if not 1 <= config.get("numberOfImages", 1) <= 5:
        return "Malformed input request: numberOfImages must be from 1 to 5"
    if config.get("quality", "standard") not in ("standard", "premium"):
        return "Malformed input request: quality must be standard or premium"
    return None
