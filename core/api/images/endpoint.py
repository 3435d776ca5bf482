"""/v1/images/generations (OpenAI's API): what images bring to the pipeline (core.pipeline).

Its validator (request.py), media planning (plan.py: only targets whose provider and model
make images), a call that builds, sends through the provider's own transport (signing,
timeouts, error scrubbing: chat's) and parses one translator's request, and its answer:
OpenAI's images response, `created` set when the provider has none. Usage is the number of
images (priced per_image) and, for gpt-image-*, OpenAI's token counts (priced per token).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import orjson
from starlette.responses import Response

from core.api.images.plan import MediaApi, MediaAttempt, plan_media
from core.api.images.request import ImageRequest, validate_images
from core.pipeline.api import Call
from core.pipeline.exchange import Exchange, json_response
from core.providers.adapters.base import Target
from core.providers.adapters.bedrock.images import IMAGES as BEDROCK
from core.providers.adapters.bedrock.images import BedrockImages
from core.providers.adapters.gemini.images import IMAGES as GEMINI
from core.providers.adapters.gemini.images import GeminiImages
from core.providers.adapters.media import MediaResult
from core.providers.adapters.openai_media import AZURE_IMAGES, OpenAIImages
from core.providers.adapters.openai_media import IMAGES as OPENAI
from core.providers.parsing import guarded_error_parser, parsing
from core.providers.upstream import translating
from core.routing.registry import Route
from core.spend.images import requested_images
from core.spend.usage import UsageSplit
from core.wire.tokens import estimate_text

ImageTranslator = OpenAIImages | GeminiImages | BedrockImages
TRANSLATORS: dict[str, ImageTranslator] = {
    "openai": OPENAI,
    "azure": AZURE_IMAGES,
    "gemini": GEMINI,
    "bedrock": BEDROCK,
}
Attempt = MediaAttempt[ImageRequest, ImageTranslator]
ImagesExchange = Exchange[ImageRequest, Attempt, MediaResult]


class ImagesApi(MediaApi):
    """The images API's part of the pipeline (complete answers only)."""

    __slots__ = ()

    def validate(self, x: ImagesExchange) -> ImageRequest:
        return validate_images(x.payload)

    def plan(self, route: Route, request: ImageRequest) -> list[Attempt]:
        return plan_media(route, request, TRANSLATORS.get, "images")

    def prompt(self, request: ImageRequest) -> int:
        return estimate_text(request.prompt)

    def estimate(self, request: ImageRequest, prompt: int) -> int:
        return prompt  # images are priced per image, not reserved as tokens

    def units(self, payload: dict[str, Any]) -> UsageSplit:
        """The images a budget reserves before the call (core.pipeline.stages.ask_of), priced
        by quality and size like the answer."""
        return requested_images(payload)

    def call(self, x: ImagesExchange) -> Call[Attempt, MediaResult]:
        return _generate

    def encode(self, x: ImagesExchange) -> Response:
        body = x.result.body
        body.setdefault("created", int(time.time()))
        x.usage = x.result.usage
        return json_response(orjson.dumps(body), x.headers())


async def _generate(attempt: Attempt, target: Target) -> MediaResult:
    """The Dispatcher's call: one upstream request on the target holding the leased key."""
    if target is not attempt.target:
        attempt = replace(attempt, target=target)
    translator = attempt.translator
    with translating(target.label):  # a shape validation missed: 400, never 500
        upstream = translator.build(attempt.request, target)
    parse_error = guarded_error_parser(translator.parse_error, target)
    _, body = await target.provider.transport.fetch(upstream, target, parse_error)
    with parsing(target):  # a reply a translator cannot read: 502, fails over
        return translator.parse(body, attempt.request)
