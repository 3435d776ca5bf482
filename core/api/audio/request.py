"""Validation of POST /v1/audio/speech (JSON) and /v1/audio/transcriptions (multipart),
with 400s naming the field, as OpenAI's API defines them.

Speech: `model`, `input` (at most 4096 characters), `voice`, `response_format`, `speed`;
`instructions` passes through. Its answer is audio bytes, always streamed to the client.
`stream_format: "sse"` is refused (the gateway relays audio bytes, not events).

Transcriptions: `file` and `model` are required; `response_format`, `language`, `prompt` and
`temperature` are checked; other fields pass through to the host. The parts were scanned
while the upload was read and spooled (core.api.audio.upload); `stream: true` is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.api.audio.upload import SplicedUpload, Upload
from core.api.images.request import one_of, text_field
from core.api.validate import check_param_names, is_number, require_model
from core.providers.adapters.base import JSON
from shared.errors import bad_request
from shared.multipart_stream import ScannedPart
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
    upload: Upload  # the body as received, spooled (core.api.audio.upload)
    model_part: ScannedPart
    file: ScannedPart
    response_format: str

    @property
    def stream(self) -> bool:
        return False

    @property
    def audio_bytes(self) -> int:
        return self.file.end - self.file.start

    def relayed(self, model: str) -> SplicedUpload:
        """The upload as a host gets it: as received, with `model` as its model field."""
        part = self.model_part
        return SplicedUpload(self.upload.spool, part.start, part.end, model.encode())


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


def validate_transcription(upload: Upload) -> TranscriptionRequest:
    """The upload's parts (scanned while it was read) checked as OpenAI checks them; its
    size was bounded while it was read (core.max_upload_bytes)."""
    parts = upload.parts
    files = [p for p in parts if p.name == "file" and p.is_file]
    if len(files) != 1:
        raise bad_request("exactly one file is required", param="file", code="invalid_value")
    _check_part_names(parts)
    # Names unchecked: OpenAI's own include `include[]`.
    fields = {p.name: p.text() for p in parts if not p.is_file}
    models = [p for p in parts if p.name == "model" and not p.is_file]
    if len(models) != 1:
        raise bad_request("model is required", param="model", code="missing_required_parameter")
    model = check_model_name({"model": fields["model"]})
    _check_fields(fields)
    fmt = fields.get("response_format", "json")
    return TranscriptionRequest(fields, model, upload, models[0], files[0], fmt)


def _check_part_names(parts: list[ScannedPart]) -> None:
    """The host reads the body as relayed, and a host may take the last of two parts of one
    name where the gateway took the first: a second `model` (one the token may not use, say)
    or a second `file` would reach it unchecked and unbilled. So only `file` may be a file,
    and a name repeats only as an array (`timestamp_granularities[]`)."""
    seen: set[str] = set()
    for part in parts:
        if part.is_file and part.name != "file":
            raise bad_request(
                f"the field {part.name} must be text, not a file",
                param=part.name[:64],
                code="invalid_value",
            )
        if part.name in seen and not part.name.endswith("[]"):
            raise bad_request(
                f"the field {part.name} is given more than once",
                param=part.name[:64],
                code="invalid_value",
            )
        seen.add(part.name)
