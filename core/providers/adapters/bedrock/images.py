"""Bedrock image generation (kind `bedrock`): Amazon Titan Image Generator and Nova Canvas
through InvokeModel, SigV4-signed (or a Bedrock API key) like every Bedrock call.

Both models take the same body (AWS's "Amazon Nova Canvas request and response" and Titan
Image Generator pages): `{taskType: "TEXT_IMAGE", textToImageParams: {text},
imageGenerationConfig: {numberOfImages, width, height, quality}}`, and answer
`{images: [base64...], error}`. OpenAI's `hd`/`high` quality is their `premium`, the rest
`standard`; size goes as width and height (the model refuses sizes it does not make, a 400
naming the host's message). Titan and Nova Canvas make at most 5 images per request, and
prompts of at most 1024 characters. Only `amazon.titan-image*` and `amazon.nova-canvas*` models
are routed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import orjson

from core.providers.adapters.base import JSON, ProviderError, Target, UpstreamRequest
from core.providers.adapters.bedrock.embeddings import invoke_url
from core.providers.adapters.bedrock.errors import parse_http_error
from core.providers.adapters.media import MediaResult, Problem, image_item
from shared.errors import invalid_upstream, upstream_object

if TYPE_CHECKING:  # the API's request types, for annotations only (no import cycle)
    from core.api.images.request import ImageRequest

MAX_IMAGES = 5
MAX_PROMPT_CHARS = 1024
_MODELS = ("amazon.titan-image", "amazon.nova-canvas")
DEFAULT_SIZE = (1024, 1024)


def quality(request: ImageRequest) -> str:
    """OpenAI's quality in AWS's words: hd or high is premium, the rest standard."""
    return "premium" if request.quality in ("hd", "high") else "standard"


def _family(model: str) -> bool:
    name = model.rpartition("/")[2]  # an ARN's model id
    head, dot, rest = name.partition(".")
    if dot and head in ("us", "eu", "apac", "global") and "." in rest:
        name = rest  # a cross-region profile
    return name.startswith(_MODELS)


class BedrockImages:
    def problem(self, request: ImageRequest, target: Target) -> Problem | None:
        if not _family(target.model):
            return "model", f"{target.label} is not a Titan Image or Nova Canvas model"
        if request.n > MAX_IMAGES:
            return "n", f"{target.label} makes at most {MAX_IMAGES} images per request"
        if len(request.prompt) > MAX_PROMPT_CHARS:
            return (
                "prompt",
                f"{target.label} takes prompts of at most {MAX_PROMPT_CHARS} characters",
            )
        return None

    def build(self, request: ImageRequest, target: Target) -> UpstreamRequest:
        width, height = request.size or DEFAULT_SIZE
        config: JSON = {
            "numberOfImages": request.n,
            "width": width,
            "height": height,
            "quality": quality(request),
        }
        body = {
            "taskType": "TEXT_IMAGE",
            "textToImageParams": {"text": request.prompt},
            "imageGenerationConfig": config,
        }
        headers = {
            "content-type": "application/json",
            "accept": "application/json",
            **target.provider.headers,
        }
        if target.api_key:
            headers["authorization"] = f"Bearer {target.api_key.reveal()}"
        return UpstreamRequest("POST", invoke_url(target), headers, orjson.dumps(body))

    def parse(self, body: bytes, request: ImageRequest) -> MediaResult:
        payload = upstream_object(body, "a response that is not JSON", "not a JSON object")
        images = payload.get("images")
        if payload.get("error") or not isinstance(images, list) or not images:
            raise invalid_upstream("a response without images")
        as_url = request.response_format == "url"
        data = [image_item(image, as_url) for image in images]
        width, height = request.size or DEFAULT_SIZE
        # Billed per image by quality and size (core.spend.images): as they were asked for.
        usage = {"images": len(data), "image_quality": quality(request)}
        return MediaResult({"data": data}, {**usage, "image_size": f"{width}x{height}"})

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        return parse_http_error(status, headers, body)


IMAGES = BedrockImages()
