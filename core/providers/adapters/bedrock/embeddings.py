"""Bedrock embeddings through InvokeModel (kind `bedrock`): Titan Text and Cohere Embed.

Which body a model takes is told by its id (also region-prefixed, e.g. `us.cohere.embed-v4:0`,
or the last segment of an inference-profile ARN):
- amazon.titan-embed-text-v2*: `{inputText, dimensions, normalize: true}`, one text per call
  (the API takes one), sent concurrently; dimensions 256, 512 or 1024. Token usage comes from
  `inputTextTokenCount`. amazon.titan-embed-text-v1 takes `{inputText}` only, no dimensions.
- cohere.embed-*: `{texts, input_type}` in batches of at most 96 (Cohere's limit). input_type
  is required by Cohere v3+; OpenAI's API has no such notion, so it defaults to
  "search_document" (embedding content to index) and a client may pass `input_type` itself.
  Dimensions (`output_dimension`: 256, 512, 1024, 1536) only on embed-v4. Usage comes from the
  X-Amzn-Bedrock-Input-Token-Count header InvokeModel returns.
Any other Bedrock model cannot embed. Input is text only.

The URL is the chat adapter's, with the operation swapped, so it keeps the escaping rule SigV4
depends on (model_url: the URL exactly as aiohttp puts it on the wire). Signing is the
adapter's signer, applied per request by the sender; errors are the adapter's mapping.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import orjson

from core.providers.adapters.base import JSON, ProviderError, Target, UpstreamRequest
from core.providers.adapters.bedrock.errors import parse_http_error
from core.providers.adapters.bedrock.options import base_url
from core.providers.adapters.bedrock.request import model_url
from core.providers.adapters.embeddings import (
    Embedded,
    EmbeddingRequest,
    Problem,
    Reply,
    Vector,
    check_vector,
    collect,
)
from core.wire.tokens import reported_tokens
from shared.errors import invalid_upstream

COHERE_BATCH = 96
TOKEN_HEADER = "x-amzn-bedrock-input-token-count"
TITAN_DIMENSIONS = (256, 512, 1024)
COHERE_V4_DIMENSIONS = (256, 512, 1024, 1536)
INPUT_TYPES = ("search_document", "search_query", "classification", "clustering")
_FAMILY = re.compile(r"^(?:[a-z-]+\.)?(amazon\.titan-embed-text|cohere\.embed)")
_VERSION = re.compile(r"-v(\d+)")
_TITAN_PARAMS = frozenset({"dimensions"})
_COHERE_PARAMS = frozenset({"dimensions", "input_type"})


def family(model: str) -> tuple[str, int] | None:
    """("titan" | "cohere", major version or 0) for an embedding model id, else None."""
    name = model.rsplit("/", 1)[-1]
    match = _FAMILY.match(name)
    if match is None:
        return None
    version = _VERSION.search(name, match.end())
    kind = "titan" if match.group(1).startswith("amazon") else "cohere"
    return kind, int(version.group(1)) if version else 0


def invoke_url(target: Target) -> str:
    converse = model_url(base_url(target.provider), target.model, False)
    return converse.removesuffix("/converse") + "/invoke"


def _dimension_problem(label: str, dimensions: int | None, allowed: tuple[int, ...]) -> Problem:
    if not allowed:
        return "dimensions", f"{label} does not support dimensions"
    choices = ", ".join(str(d) for d in allowed)
    return "dimensions", f"{label} supports dimensions {choices}, not {dimensions}"


class BedrockEmbeddings:
    parallel = 8

    def params(self, target: Target) -> frozenset[str] | None:
        kind = family(target.model)
        return _COHERE_PARAMS if kind is not None and kind[0] == "cohere" else _TITAN_PARAMS

    def problem(self, request: EmbeddingRequest, target: Target) -> Problem | None:
        kind = family(target.model)
        if kind is None:
            return "model", f"{target.label} is not an embedding model"
        if request.uses_tokens:
            return "input", f"{target.label} takes text input only, not token ids"
        name, version = kind
        allowed: tuple[int, ...]
        if name == "titan":
            allowed = () if version == 1 else TITAN_DIMENSIONS
        else:
            allowed = COHERE_V4_DIMENSIONS if version >= 4 else ()
            input_type = request.payload.get("input_type")
            if input_type is not None and input_type not in INPUT_TYPES:
                return "input_type", f"input_type must be one of {', '.join(INPUT_TYPES)}"
        if request.dimensions is not None and request.dimensions not in allowed:
            return _dimension_problem(target.label, request.dimensions, allowed)
        return None

    def build(self, request: EmbeddingRequest, target: Target) -> list[UpstreamRequest]:
        kind = family(target.model)
        url = invoke_url(target)
        headers = {
            "content-type": "application/json",
            "accept": "application/json",
            **target.provider.headers,
        }
        if target.api_key:
            headers["authorization"] = f"Bearer {target.api_key.reveal()}"
        if kind is not None and kind[0] == "cohere":
            bodies = [
                cohere_body(request.texts[i : i + COHERE_BATCH], request)
                for i in range(0, len(request.texts), COHERE_BATCH)
            ]
        else:
            v2 = kind is None or kind[1] != 1
            bodies = [titan_body(text, request.dimensions, v2) for text in request.texts]
        return [UpstreamRequest("POST", url, dict(headers), orjson.dumps(b)) for b in bodies]

    def parse(self, replies: list[Reply], request: EmbeddingRequest, target: Target) -> Embedded:
        kind = family(target.model)
        cohere = kind is not None and kind[0] == "cohere"
        return collect(replies, request, target.model, parse_cohere if cohere else parse_titan)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        return parse_http_error(status, headers, body)


def _header_tokens(value: str | None) -> int | None:
    if value is None or not (0 < len(value) <= 15 and value.isascii() and value.isdigit()):
        return None
    return reported_tokens(int(value))


def titan_body(text: str, dimensions: int | None, v2: bool = True) -> JSON:
    """v2 normalizes by default; it is asked explicitly, as OpenAI's vectors are unit length."""
    if not v2:
        return {"inputText": text}
    body: JSON = {"inputText": text, "normalize": True}
    if dimensions is not None:
        body["dimensions"] = dimensions
    return body


def cohere_body(texts: tuple[str, ...], request: EmbeddingRequest) -> JSON:
    input_type = request.payload.get("input_type") or "search_document"
    body: JSON = {"texts": list(texts), "input_type": input_type}
    if request.dimensions is not None:
        body["output_dimension"] = request.dimensions
    return body


def parse_titan(headers: Mapping[str, str], payload: JSON) -> tuple[list[Vector], int | None]:
    """One vector; the tokens counted in the body."""
    vector = check_vector(payload.get("embedding"))
    return [vector], reported_tokens(payload.get("inputTextTokenCount"))


def parse_cohere(headers: Mapping[str, str], payload: JSON) -> tuple[list[Vector], int | None]:
    """`embeddings` is a list of vectors, or by type ({"float": [...]}) on newer models; the
    tokens are counted in a header."""
    embeddings = payload.get("embeddings")
    if isinstance(embeddings, dict):
        embeddings = embeddings.get("float")
    if not isinstance(embeddings, list):
        raise invalid_upstream("a response without embeddings")
    vectors = [check_vector(vector) for vector in embeddings]
    return vectors, _header_tokens(headers.get(TOKEN_HEADER))
