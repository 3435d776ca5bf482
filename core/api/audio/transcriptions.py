"""/v1/audio/transcriptions (OpenAI's API): a multipart upload through the pipeline.

The body is multipart, so this API reads it with its own first stage (`MultipartRead`, in
place of JSON's `Read`): the text fields become `x.payload` (routing rules, billing tags and
budgets read them as they read a JSON body) and the file stays in the spool the route read
the upload into (core.api.audio.upload: verified as it streamed in, memory then a temporary
file). Each attempt streams that spool to its host with the target's model spliced in
(core.providers.adapters.openai_media), so a failover sends the same upload again; the
answer is relayed as the host made it (JSON, or text/srt/vtt with its content type). Usage:
the host's tokens (gpt-4o-*-transcribe) or seconds (whisper-1), else seconds estimated from
the upload (core.api.audio.duration).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from starlette.responses import Response

from core.api.audio.duration import estimate_seconds
from core.api.audio.request import TranscriptionRequest, validate_transcription
from core.api.audio.upload import upload_of
from core.api.images.plan import MediaApi, MediaAttempt, plan_media
from core.pipeline.api import Call
from core.pipeline.exchange import Exchange
from core.providers.adapters.base import Target
from core.providers.adapters.openai_media import (
    AZURE_TRANSCRIPTIONS,
    TRANSCRIPTIONS,
    OpenAITranscriptions,
)
from core.providers.parsing import guarded_error_parser, parsing
from core.providers.upstream import translating
from core.routing.registry import Route
from core.spend.quote import USAGE_ESTIMATED_HEADER
from core.wire.tokens import reported_tokens
from shared.errors import invalid_upstream, upstream_object

TRANSLATORS = {"openai": TRANSCRIPTIONS, "azure": AZURE_TRANSCRIPTIONS}
Attempt = MediaAttempt[TranscriptionRequest, OpenAITranscriptions]
JSON_FORMATS = ("json", "verbose_json")


@dataclass(slots=True)
class Transcript:
    body: bytes
    content_type: str
    usage: dict[str, Any]


TranscriptionExchange = Exchange[TranscriptionRequest, Attempt, Transcript]


class MultipartRead:
    """The first stage for multipart APIs: validation needs the raw body and its type."""

    name = "read"

    async def __call__(self, x: Exchange[Any, Any, Any]) -> None:
        x.payload = {}  # filled by validate, from the multipart text fields


class TranscriptionsApi(MediaApi):
    __slots__ = ()

    def validate(self, x: TranscriptionExchange) -> TranscriptionRequest:
        request = validate_transcription(upload_of(x.http))
        x.payload = request.payload
        return request

    def plan(self, route: Route, request: TranscriptionRequest) -> list[Attempt]:
        return plan_media(route, request, TRANSLATORS.get, "audio transcriptions")

    def prompt(self, request: TranscriptionRequest) -> int:
        return 0  # audio is priced by the second or by the host's token count

    def estimate(self, request: TranscriptionRequest, prompt: int) -> int:
        return 0

    def call(self, x: TranscriptionExchange) -> Call[Attempt, Transcript]:
        return _transcribe

    def encode(self, x: TranscriptionExchange) -> Response:
        result = x.result
        x.usage = result.usage
        headers = x.headers()
        if result.usage.get("estimated"):
            headers[USAGE_ESTIMATED_HEADER] = "true"
        return Response(result.body, media_type=result.content_type, headers=headers)


async def _transcribe(attempt: Attempt, target: Target) -> Transcript:
    if target is not attempt.target:
        attempt = replace(attempt, target=target)
    translator, request = attempt.translator, attempt.request
    with translating(target.label):
        upstream = translator.build(request, target)
    parse_error = guarded_error_parser(translator.parse_error, target)
    headers, body = await target.provider.transport.fetch(upstream, target, parse_error)
    with parsing(target):
        return read_transcript(headers.get("content-type"), body, request)


def read_transcript(
    content_type: str | None, body: bytes, request: TranscriptionRequest
) -> Transcript:
    """The host's answer as it came, with the usage to account."""
    usage: dict[str, Any] = {}
    if request.response_format in JSON_FORMATS:
        payload = upstream_object(body, "a transcription that is not JSON", "not a JSON object")
        if not isinstance(payload.get("text"), str):
            raise invalid_upstream("a transcription without text")
        usage = transcript_usage(payload)
    if not usage:
        file = request.file
        usage = {"seconds": estimate_seconds(bytes(file.head), file.end - file.start)}
        usage["estimated"] = True
    return Transcript(body, content_type or "application/json", usage)


def transcript_usage(payload: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's billed usage (tokens, or seconds), else verbose_json's duration; {} if none."""
    reported = payload.get("usage")
    if isinstance(reported, dict) and reported.get("type") == "tokens":
        prompt = reported_tokens(reported.get("input_tokens")) or 0
        output = reported_tokens(reported.get("output_tokens")) or 0
        return {
            "prompt_tokens": prompt,
            "completion_tokens": output,
            "total_tokens": prompt + output,
        }
    seconds = reported.get("seconds") if isinstance(reported, dict) else payload.get("duration")
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds >= 0:
        return {"seconds": seconds}
    return {}
