"""Gemini image generation (kind `gemini`): Imagen's `predict` method, AI Studio or Vertex AI.

Google documents two ways to make images: the Imagen models (`imagen-*`) through `predict`,
`{instances: [{prompt}], parameters: {sampleCount, aspectRatio}}` answered with
`predictions[].bytesBase64Encoded` (one per image, billed per image), and the Gemini image
models through generateContent. Imagen's is the one built for the images API: it takes a
count and an aspect ratio, and returns only images, so only `imagen-*` models are routed
here. OpenAI's size is mapped to the nearest aspect ratio Imagen supports; quality is not
Imagen's (a standard or ultra model is the choice). URL, auth and error mapping are the
embeddings translator's (the same `predict` layout for both hosts).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import orjson

from core.providers.adapters.base import JSON, ProviderError, Target, UpstreamRequest
from core.providers.adapters.gemini.embeddings import GEMINI
from core.providers.adapters.media import MediaResult, Problem, image_item
from shared.errors import invalid_upstream, upstream_object

if TYPE_CHECKING:  # the API's request types, for annotations only (no import cycle)
    from core.api.images.request import ImageRequest

MAX_SAMPLES = 4  # Imagen's sampleCount limit
ASPECTS = {"1:1": 1.0, "3:4": 0.75, "4:3": 4 / 3, "9:16": 9 / 16, "16:9": 16 / 9}


def aspect_ratio(size: tuple[int, int]) -> str:
    ratio = size[0] / size[1]
    return min(ASPECTS, key=lambda name: abs(ASPECTS[name] - ratio))


class GeminiImages:
    def problem(self, request: ImageRequest, target: Target) -> Problem | None:
        if not target.model.removeprefix("models/").startswith("imagen-"):
            return "model", f"{target.label} is not an Imagen model"
        if request.n > MAX_SAMPLES:
            return "n", f"{target.label} makes at most {MAX_SAMPLES} images per request"
        return None

    def build(self, request: ImageRequest, target: Target) -> UpstreamRequest:
        parameters: JSON = {"sampleCount": request.n}
        if request.size is not None:
            parameters["aspectRatio"] = aspect_ratio(request.size)
        body = {"instances": [{"prompt": request.prompt}], "parameters": parameters}
        headers = {**GEMINI.headers(target), "content-type": "application/json"}
        url = GEMINI.url(target, "predict")
        return UpstreamRequest("POST", url, headers, orjson.dumps(body))

    def parse(self, body: bytes, request: ImageRequest) -> MediaResult:
        payload = upstream_object(body, "a response that is not JSON", "not a JSON object")
        predictions = payload.get("predictions")
        if not isinstance(predictions, list) or not predictions:
            # Imagen answers 200 without predictions when its safety filter dropped them all.
            raise invalid_upstream("a response without images (filtered, or none made)")
        as_url = request.response_format == "url"
        data = []
        for prediction in predictions:
            if not isinstance(prediction, dict):
                raise invalid_upstream("a malformed prediction")
            mime = prediction.get("mimeType")
            mime = mime if isinstance(mime, str) else "image/png"
            data.append(image_item(prediction.get("bytesBase64Encoded"), as_url, mime))
        return MediaResult({"data": data}, {"images": len(data)})

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        return GEMINI.parse_error(status, headers, body)


IMAGES = GeminiImages()
