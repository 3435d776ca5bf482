"""OpenAI-compatible hosts (kind `openai`, every preset) and Azure OpenAI: images, speech and
transcriptions, sent where the chat adapter sends /chat/completions (Azure's deployment and v1
URL styles, api-version and auth included) with that path swapped for the API's own.

The bodies pass through with `model` rewritten to the target's; replies are OpenAI's own
shapes, relayed as-is apart from the usage the gateway accounts (core.spend: per image, per
second of audio, or tokens where OpenAI bills tokens: gpt-image-1, gpt-4o-transcribe).

Which hosts serve which API (the routes skip the others, README: Images and audio):
- images: openai, Azure and the generic preset (an unknown host gets everything, as for chat);
- transcriptions: those, groq (whisper-large-v3) and vllm;
- speech: openai, Azure, groq and the generic preset.
On OpenAI itself only the model families with the API are routed there (gpt-image-*, dall-e-*;
whisper-*, *-transcribe; tts-*, *-tts), so a route mixing chat and image models picks right.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from core.providers.adapters.azure import ADAPTER as AZURE_ADAPTER
from core.providers.adapters.base import ProviderError, Target, UpstreamRequest
from core.providers.adapters.media import MediaResult, Problem, image_item
from core.providers.adapters.openai_compat import ADAPTER as OPENAI_ADAPTER
from core.providers.adapters.openai_compat import OpenAICompatAdapter
from shared.errors import invalid_upstream, upstream_object

if TYPE_CHECKING:  # the API's request types, for annotations only (no import cycle)
    from core.api.audio.request import SpeechRequest, TranscriptionRequest
    from core.api.images.request import ImageRequest

IMAGE_HOSTS = frozenset({"openai", "openai-compatible"})
TRANSCRIBE_HOSTS = frozenset({"openai", "openai-compatible", "groq", "vllm"})
SPEECH_HOSTS = frozenset({"openai", "openai-compatible", "groq"})
# On hosts that name their models as OpenAI does, the families that serve each API.
IMAGE_MODELS = re.compile(r"(gpt-image|dall-e|chatgpt-image)")
TRANSCRIBE_MODELS = re.compile(r"(whisper|transcribe)")
SPEECH_MODELS = re.compile(r"(tts)")


def api_url(chat_url: str, path: str) -> str:
    """The chat adapter's URL with /chat/completions swapped for `path` (query kept)."""
    base, sep, query = chat_url.partition("?")
    return base.removesuffix("/chat/completions") + path + sep + query


def without_nulls(payload: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in payload.items() if value is not None}


class OpenAIMedia:
    """One API's translator for OpenAI-compatible hosts (and, with AZURE_ADAPTER, Azure)."""

    def __init__(
        self,
        path: str,
        hosts: frozenset[str],
        models: re.Pattern[str],
        adapter: OpenAICompatAdapter = OPENAI_ADAPTER,
    ) -> None:
        self.path = path
        self.hosts = hosts
        self.models = models
        self.adapter = adapter
        self.azure = adapter is AZURE_ADAPTER

    def problem(self, request: Any, target: Target) -> Problem | None:
        api = self.path.rpartition("/")[2]
        if self.azure:  # a deployment's name says nothing of its model: the operator's routes
            return None
        preset = self.adapter.preset(target.provider).name
        if preset not in self.hosts:
            return "model", f"{target.label} has no {api} API"
        if preset == "openai" and self.models.search(target.model.lower()) is None:
            return "model", f"{target.label} is not a model of the {api} API"
        return None

    def headers(self, target: Target, content_type: str) -> dict[str, str]:
        return {
            "content-type": content_type,
            **target.provider.headers,
            **self.adapter.auth_headers(target),
        }

    def url(self, target: Target) -> str:
        return api_url(self.adapter.url(target), self.path)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        return self.adapter.parse_error(status, headers, body)


class OpenAIImages(OpenAIMedia):
    def __init__(self, adapter: OpenAICompatAdapter = OPENAI_ADAPTER) -> None:
        super().__init__("/images/generations", IMAGE_HOSTS, IMAGE_MODELS, adapter)

    def build(self, request: ImageRequest, target: Target) -> UpstreamRequest:
        body = without_nulls(request.payload)  # null is the default: absent says so everywhere
        body["model"] = target.model
        if "gpt-image" in target.model.lower():  # always base64; it refuses response_format
            body.pop("response_format", None)
        headers = self.headers(target, "application/json")
        return UpstreamRequest("POST", self.url(target), headers, orjson.dumps(body))

    def parse(self, body: bytes, request: ImageRequest) -> MediaResult:
        payload = upstream_object(body, "a response that is not JSON", "not a JSON object")
        data = payload.get("data")
        if not isinstance(data, list) or not data:
            raise invalid_upstream("a response without images")
        as_url = request.response_format == "url"
        fmt = payload.get("output_format") or request.payload.get("output_format")
        mime = f"image/{fmt}" if fmt in ("png", "jpeg", "webp") else "image/png"
        for index, item in enumerate(data):
            if not isinstance(item, dict):
                raise invalid_upstream("a malformed image")
            if "b64_json" in item and as_url:  # gpt-image-*: bytes only (README: Images)
                data[index] = {**item, **image_item(item.pop("b64_json"), True, mime)}
            elif not isinstance(item.get("url") or item.get("b64_json"), str):
                raise invalid_upstream("an image without data")
        return MediaResult(payload, image_usage(payload, request, len(data)))


def image_usage(payload: dict[str, Any], request: ImageRequest, images: int) -> dict[str, Any]:
    """Canonical usage: OpenAI's image token counts (gpt-image-*), the image count, and the
    quality and size they were made at (per-image prices depend on both, core.spend.images):
    as the answer reports them (gpt-image-1 says what `auto` became), else as asked."""
    usage: dict[str, Any] = {"images": images}
    usage["image_quality"] = payload.get("quality") or request.quality or ""
    usage["image_size"] = payload.get("size") or request.payload.get("size") or ""
    reported = payload.get("usage")
    if isinstance(reported, dict):
        usage["prompt_tokens"] = reported.get("input_tokens", 0)
        usage["completion_tokens"] = reported.get("output_tokens", 0)
        usage["total_tokens"] = reported.get("total_tokens", 0)
    return usage


class OpenAISpeech(OpenAIMedia):
    def __init__(self, adapter: OpenAICompatAdapter = OPENAI_ADAPTER) -> None:
        super().__init__("/audio/speech", SPEECH_HOSTS, SPEECH_MODELS, adapter)

    def build(self, request: SpeechRequest, target: Target) -> UpstreamRequest:
        body = without_nulls(request.payload)
        body.update(model=target.model, response_format=request.response_format)
        headers = self.headers(target, "application/json")
        return UpstreamRequest("POST", self.url(target), headers, orjson.dumps(body))


class OpenAITranscriptions(OpenAIMedia):
    def __init__(self, adapter: OpenAICompatAdapter = OPENAI_ADAPTER) -> None:
        super().__init__("/audio/transcriptions", TRANSCRIBE_HOSTS, TRANSCRIBE_MODELS, adapter)

    def build(self, request: TranscriptionRequest, target: Target) -> UpstreamRequest:
        """The spooled upload with the target's model spliced in, streamed from the spool
        (never one bytes object), with its exact Content-Length."""
        body = request.relayed(target.model)
        headers = self.headers(target, request.upload.content_type)
        headers["Content-Length"] = str(body.size)
        return UpstreamRequest("POST", self.url(target), headers, b"", body)


AZURE_IMAGES = OpenAIImages(AZURE_ADAPTER)
AZURE_SPEECH = OpenAISpeech(AZURE_ADAPTER)
AZURE_TRANSCRIPTIONS = OpenAITranscriptions(AZURE_ADAPTER)
IMAGES = OpenAIImages()
SPEECH = OpenAISpeech()
TRANSCRIPTIONS = OpenAITranscriptions()
