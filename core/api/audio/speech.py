"""/v1/audio/speech (OpenAI's API): JSON in, audio bytes streamed back as they arrive.

Dispatched like a chat stream: an attempt succeeds once the host's first audio bytes are in
hand (the first-byte timeout applies, and a host that fails before then fails over); the
rest is relayed chunk by chunk, never held whole. Audio has no in-band error: a host that
breaks after the first byte ends the client's response cut short (a chunked body without its
end, which every HTTP client reports as an error), accounted as `cut:<class>`.

Usage: tts-1 and tts-1-hd bill characters, so the input's characters are counted as its
prompt tokens (the catalogue prices them per million characters); other speech models
(gpt-4o-mini-tts) bill tokens the host does not report on this API, so the input's tokens are
estimated and flagged `estimated`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from starlette.responses import Response

from core.api.audio.request import SpeechRequest, validate_speech
from core.api.images.plan import MediaApi, MediaAttempt, plan_media
from core.pipeline.api import Call
from core.pipeline.exchange import SSE_HEADERS, AccountedStream, Exchange
from core.providers.adapters.base import ProviderError, Target
from core.providers.adapters.openai_media import AZURE_SPEECH, SPEECH, OpenAISpeech
from core.providers.parsing import guarded_error_parser
from core.providers.transport import UpstreamBody
from core.providers.upstream import translating
from core.routing.registry import Route
from core.wire.tokens import estimate_text
from shared.cut_stream import CutShort, CuttableStream

TRANSLATORS = {"openai": SPEECH, "azure": AZURE_SPEECH}
Attempt = MediaAttempt[SpeechRequest, OpenAISpeech]
MEDIA_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}


class AudioStream(CuttableStream, AccountedStream):
    """Audio bytes as they arrive, accounted however they end, cut short on a failure."""


@dataclass(slots=True)
class Opened:
    body: UpstreamBody
    first: bytes


SpeechExchange = Exchange[SpeechRequest, Attempt, Opened]


class SpeechApi(MediaApi):
    __slots__ = ()

    def validate(self, x: SpeechExchange) -> SpeechRequest:
        return validate_speech(x.payload)

    def plan(self, route: Route, request: SpeechRequest) -> list[Attempt]:
        return plan_media(route, request, TRANSLATORS.get, "audio speech")

    def prompt(self, request: SpeechRequest) -> int:
        return estimate_text(request.input)

    def estimate(self, request: SpeechRequest, prompt: int) -> int:
        return max(prompt, len(request.input))  # characters, where the model bills those

    def call(self, x: SpeechExchange) -> Call[Attempt, Opened]:
        return _open

    def encode(self, x: SpeechExchange) -> Response:
        usage = speech_usage(x.outcome.target.model, x.request.input)
        media_type = MEDIA_TYPES[x.request.response_format]
        headers = {**SSE_HEADERS, **x.headers()}  # no cache, no proxy buffering
        return AudioStream(x, _relay(x, usage), headers, media_type)


def speech_usage(model: str, text: str) -> dict[str, Any]:
    if "tts-1" in model.lower():
        return {"prompt_tokens": len(text), "total_tokens": len(text), "characters": len(text)}
    tokens = estimate_text(text)
    return {
        "prompt_tokens": tokens,
        "total_tokens": tokens,
        "estimated": True,
        "characters": len(text),
    }


async def _open(attempt: Attempt, target: Target) -> Opened:
    """The Dispatcher's call: the host's answer, once its first audio bytes are in hand."""
    if target is not attempt.target:
        attempt = replace(attempt, target=target)
    translator = attempt.translator
    with translating(target.label):
        upstream = translator.build(attempt.request, target)
    parse_error = guarded_error_parser(translator.parse_error, target)
    body = await target.provider.transport.open(upstream, target, parse_error)
    try:
        first = await body.read()
    except BaseException:
        body.close()
        raise
    return Opened(body, first)


async def _relay(x: SpeechExchange, usage: dict[str, Any]) -> AsyncIterator[bytes]:
    """The audio as it arrives; accounted however it ends (x.finish)."""
    opened = x.result
    outcome, failure = "ok", None
    try:
        chunk = opened.first
        while chunk:
            yield chunk
            chunk = await opened.body.read()
        opened.body.release()
    except ProviderError as error:
        outcome, failure = f"cut:{error.failure_class}", error
        raise CutShort from None  # no in-band error for audio: the response ends cut short
    except (GeneratorExit, asyncio.CancelledError):
        outcome = "cancelled"
        raise
    finally:
        opened.body.close()
        x.finish(usage, outcome, failure)
