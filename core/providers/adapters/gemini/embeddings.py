"""Gemini embeddings, through AI Studio or Vertex AI (kind `gemini`).

AI Studio: `models/{model}:batchEmbedContents`, one EmbedContentRequest per input
(`{model: "models/{model}", content: {parts: [{text}]}, outputDimensionality}`), at most 100
per call. It reports no token usage, so usage is estimated (and flagged in a response header).

Vertex AI: the `publishers/google/models/{model}:predict` method, `{instances: [{content}],
parameters: {outputDimensionality}}`. Chosen over Vertex's newer embedContent method because
predict is what Google documents for every Vertex text-embedding model (gemini-embedding-001,
text-embedding-005, text-multilingual-embedding-002) and it returns each input's token count
(`statistics.token_count`), so usage is real. Google allows 250 instances per call, but only
one for gemini-embedding-* models: those inputs are sent one per call, concurrently.

Only models whose id contains "embedding" are treated as embedding models (every Gemini
embedding model is named so); a chat model on a route is skipped, and a route of chat models
alone is a 400 naming `model`. Input is text only: Gemini takes no token ids. URL building,
model-id checks, settings and error mapping are the chat adapter's.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from core.providers.adapters.base import JSON, ProviderError, Target, UpstreamRequest
from core.providers.adapters.embeddings import (
    Embedded,
    EmbeddingRequest,
    Problem,
    Reply,
    Vector,
    check_vector,
    collect,
)
from core.providers.adapters.gemini import ADAPTER as GEMINI_ADAPTER
from core.providers.adapters.gemini.errors import parse_error
from core.providers.adapters.gemini.settings import Settings
from core.wire.tokens import reported_tokens
from shared.errors import invalid_upstream

STUDIO_BATCH = 100
VERTEX_BATCH = 250
_PARAMS = frozenset({"dimensions"})


def _chunks(texts: tuple[str, ...], size: int) -> list[tuple[str, ...]]:
    return [texts[i : i + size] for i in range(0, len(texts), size)]


class GeminiEmbeddings:
    parallel = 8

    def params(self, target: Target) -> frozenset[str] | None:
        return _PARAMS

    def problem(self, request: EmbeddingRequest, target: Target) -> Problem | None:
        if "embedding" not in target.model:
            return "model", f"{target.label} is not an embedding model"
        if request.uses_tokens:
            return "input", f"{target.label} takes text input only, not token ids"
        return None

    def settings(self, target: Target) -> Settings:
        return GEMINI_ADAPTER.settings(target.provider)

    def url(self, target: Target, method: str) -> str:
        # The chat adapter validates the model id and knows both URL layouts.
        chat = GEMINI_ADAPTER.url(target, self.settings(target), stream=False)
        return chat.removesuffix(":generateContent") + ":" + method

    def headers(self, target: Target) -> dict[str, str]:
        settings = self.settings(target)
        headers = {**settings.headers, "accept": "application/json"}
        if target.api_key:
            if settings.vertex:
                headers["authorization"] = f"Bearer {target.api_key.reveal()}"
            else:
                headers["x-goog-api-key"] = target.api_key.reveal()
        return headers

    def batch_size(self, target: Target) -> int:
        if not self.settings(target).vertex:
            return STUDIO_BATCH
        return 1 if target.model.startswith("gemini-embedding") else VERTEX_BATCH

    def build(self, request: EmbeddingRequest, target: Target) -> list[UpstreamRequest]:
        vertex = self.settings(target).vertex
        url = self.url(target, "predict" if vertex else "batchEmbedContents")
        headers = self.headers(target)
        bodies = [
            vertex_body(chunk, request.dimensions)
            if vertex
            else studio_body(chunk, target.model, request.dimensions)
            for chunk in _chunks(request.texts, self.batch_size(target))
        ]
        return [UpstreamRequest("POST", url, dict(headers), orjson.dumps(b)) for b in bodies]

    def parse(self, replies: list[Reply], request: EmbeddingRequest, target: Target) -> Embedded:
        vertex = self.settings(target).vertex
        return collect(replies, request, target.model, parse_predictions if vertex else parse_batch)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        return parse_error(status, headers, body)


def studio_body(texts: tuple[str, ...], model: str, dimensions: int | None) -> JSON:
    name = model if model.startswith("tunedModels/") else "models/" + model.removeprefix("models/")
    requests = []
    for text in texts:
        entry: JSON = {"model": name, "content": {"parts": [{"text": text}]}}
        if dimensions is not None:
            entry["outputDimensionality"] = dimensions
        requests.append(entry)
    return {"requests": requests}


def vertex_body(texts: tuple[str, ...], dimensions: int | None) -> JSON:
    body: JSON = {"instances": [{"content": text} for text in texts]}
    if dimensions is not None:
        body["parameters"] = {"outputDimensionality": dimensions}
    return body


def parse_batch(headers: Mapping[str, str], payload: JSON) -> tuple[list[Vector], int | None]:
    """AI Studio's vectors; it counts no tokens."""
    embeddings = payload.get("embeddings")
    if not isinstance(embeddings, list):
        raise invalid_upstream("a response without embeddings")
    vectors: list[Vector] = []
    for item in embeddings:
        values = item.get("values") if isinstance(item, dict) else None
        vectors.append(check_vector(values))
    return vectors, None


def parse_predictions(headers: Mapping[str, str], payload: JSON) -> tuple[list[Vector], int | None]:
    """Vertex's vectors and the summed token counts, None if any is missing."""
    predictions = payload.get("predictions")
    if not isinstance(predictions, list):
        raise invalid_upstream("a response without predictions")
    vectors: list[Vector] = []
    total: int | None = 0
    for prediction in predictions:
        embeddings = prediction.get("embeddings") if isinstance(prediction, dict) else None
        if not isinstance(embeddings, dict):
            raise invalid_upstream("a prediction without embeddings")
        vectors.append(check_vector(embeddings.get("values")))
        statistics = embeddings.get("statistics")
        count = (
            reported_tokens(statistics.get("token_count")) if isinstance(statistics, dict) else None
        )
        total = None if total is None or count is None else total + count
    return vectors, total


GEMINI = GeminiEmbeddings()
