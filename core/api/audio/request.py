"""Validation of POST /v1/audio/speech (JSON) and /v1/audio/transcriptions (multipart),
with 400s naming the field, as OpenAI's API defines them.

Speech: `model`, `input` (at most 4096 characters), `voice`, `response_format`, `speed`;
`instructions` passes through. Its answer is audio bytes, always streamed to the client.
`stream_format: "sse"` is refused (the gateway relays audio bytes, not events).

Transcriptions: `file` and `model` are required; `response_format`, `language`, `prompt` and
`temperature` are checked; other fields pass through to the host. The text fields are read
from the multipart body in place (core.api.audio.multipart); `stream: true` is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.api.images.request import one_of, text_field
from core.api.validate import check_param_names, is_number, require_model
from core.providers.adapters.base import JSON
from shared import multipart
from shared.errors import bad_request
from shared.multipart import MAX_AUDIO_BYTES
from shared.names import check_model_name

MAX_SPEECH_CHARS = 4096
SPEECH_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
TRANSCRIPT_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")


@dataclass(frozen=True, slots=True)
class SpeechRequest:
    payload: JSON
    model: str
    input: str
    response_format: str

    @property
    def stream(self) -> bool:
        """Audio is relayed as it arrives, never buffered whole."""
        return True


def validate_speech(payload: JSON) -> SpeechRequest:
    check_param_names(payload)
    model = require_model(payload)
    text = text_field(payload, "input", MAX_SPEECH_CHARS)
    voice = payload.get("voice")
    if not (isinstance(voice, str) and voice) and not (
        isinstance(voice, dict) and isinstance(voice.get("id"), str)
    ):
        raise bad_request("voice is required", param="voice", code="missing_required_parameter")
    fmt = one_of(payload, "response_format", SPEECH_FORMATS, "mp3")
    speed = payload.get("speed")
    if speed is not None and (not is_number(speed) or not 0.25 <= speed <= 4.0):
        raise bad_request("speed must be from 0.25 to 4.0", param="speed", code="invalid_value")
    if payload.get("stream_format") not in (None, "audio"):
        raise bad_request(
            "stream_format must be 'audio': the gateway relays audio bytes",
            param="stream_format",
            code="unsupported_parameter",
        )
    return SpeechRequest(payload, model, text, fmt)


@dataclass(frozen=True, slots=True)
class TranscriptionRequest:
    payload: JSON  # the text fields, for routing rules, billing tags and budgets
    model: str
    body: bytes  # the multipart body as received
    content_type: str  # the client's, with its boundary: the body is relayed as it came
    model_part: multipart.Part
    file: multipart.Part
    response_format: str

    @property
    def stream(self) -> bool:
        return False

    @property
    def audio_bytes(self) -> int:
        return self.file.end - self.file.start


def _fields(body: bytes, parts: list[multipart.Part]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for part in parts:
        if part.filename is None:
            fields[part.name] = multipart.text(body, part)
    return fields


def _check_fields(fields: dict[str, Any]) -> None:
    one_of(fields, "response_format", TRANSCRIPT_FORMATS)
    temperature = fields.get("temperature")
    if temperature is not None:
        try:
            valid = 0.0 <= float(temperature) <= 1.0
        except ValueError:
            valid = False
        if not valid:
            raise bad_request(
                "temperature must be a number from 0 to 1",
                param="temperature",
                code="invalid_value",
            )
    if fields.get("stream", "false").lower() not in ("false", "0"):
        raise bad_request(
            "streamed transcription is not supported; omit stream",
            param="stream",
            code="unsupported_parameter",
        )


def validate_transcription(body: bytes, content_type: str | None) -> TranscriptionRequest:
    parts = multipart.parse(body, multipart.boundary_of(content_type))
    files = [p for p in parts if p.name == "file" and p.filename is not None]
    if len(files) != 1:
        raise bad_request("exactly one file is required", param="file", code="invalid_value")
    if files[0].end - files[0].start > MAX_AUDIO_BYTES:
        raise bad_request(
            f"file must be at most {MAX_AUDIO_BYTES} bytes", param="file", code="file_too_large"
        )
    fields = _fields(body, parts)  # names unchecked: OpenAI's own include `include[]`
    models = [p for p in parts if p.name == "model" and p.filename is None]
    if len(models) != 1:
        raise bad_request("model is required", param="model", code="missing_required_parameter")
    model = check_model_name({"model": fields["model"]})
    _check_fields(fields)
    fmt = fields.get("response_format", "json")
    kind = content_type or ""
    return TranscriptionRequest(fields, model, body, kind, models[0], files[0], fmt)
