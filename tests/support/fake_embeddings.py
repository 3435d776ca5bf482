"""Fake embeddings upstreams: OpenAI-compatible + Azure, and Gemini / Bedrock by subclassing.

Each validates requests the way the real API does (unknown fields, batch limits, allowed
dimensions, where the key goes) so a passing round trip means the translation is acceptable
upstream. Vectors are deterministic and exactly representable in float32: element 0 is
len(text) / 8 (token lists: their length / 8), so tests can check order and the encoding.

Scripted by model id:
  openai/azure  fail-429 (429 with Retry-After: 3), no-usage, floats-only (ignores
                encoding_format), broken (200 without data), bad-input (400 naming input)
  gemini        embedding-<scenario>: the chat fake's failures (embedding-fail-429, ...)
  bedrock       throttle.<model id>: 429 ThrottlingException
"""

from __future__ import annotations

import base64
import re
import struct
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web

from tests.support.fake_bedrock import FakeBedrock, aws_error
from tests.support.fake_gemini import FakeGemini, error_response
from tests.support.fake_server import FakeServer, Received

OPENAI_PARAMS = {"model", "input", "encoding_format", "dimensions", "user"}


def fake_vector(item: str | list[int], dimensions: int | None = None) -> list[float]:
    size = dimensions or 8
    return [len(item) / 8] + [((i % 4) - 1.5) / 4 for i in range(1, size)]


def words(text: str) -> int:
    """The fakes' token count: words, deliberately unlike the gateway's 4-chars estimate."""
    return len(text.split())


def _openai_error(
    status: int, message: str, code: str | None = None, param: str | None = None, **headers: str
) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param}}
    body["error"]["code"] = code
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


class FakeOpenAIEmbeddings(FakeServer):
    """POST /v1/embeddings, and Azure's /openai/v1/embeddings and deployments paths."""

    def __init__(self, api_key: str = "sk-embed", azure_key: str = "azure-embed") -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/embeddings", self.openai)
        app.router.add_post("/openai/v1/embeddings", self.azure_v1)
        app.router.add_post("/openai/deployments/{deployment}/embeddings", self.azure_deployment)
        super().__init__(app)
        self.api_key = api_key
        self.azure_key = azure_key

    async def _record(self, request: web.Request) -> Any:
        raw = await request.read()
        body = orjson.loads(raw)
        self.received.append(
            Received(request.method, request.path_qs, dict(request.headers), raw, body)
        )
        return body

    async def openai(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _openai_error(401, "Incorrect API key provided: sk-emb***", "invalid_api_key")
        return self._serve(body, body.get("model"))

    async def azure_v1(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        if request.headers.get("api-key") != self.azure_key:
            return _openai_error(401, "Access denied due to invalid subscription key.", "401")
        return self._serve(body, body.get("model"))

    async def azure_deployment(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        if request.headers.get("api-key") != self.azure_key:
            return _openai_error(401, "Access denied due to invalid subscription key.", "401")
        if request.query.get("api-version") != "2024-10-21":
            return _openai_error(404, "Resource not found", "404")
        return self._serve(body, request.match_info["deployment"])

    def _serve(self, body: dict[str, Any], model: Any) -> web.Response:
        self.calls[str(model)] += 1
        unknown = sorted(set(body) - OPENAI_PARAMS)
        if unknown:
            return _openai_error(400, f"Unrecognized request argument supplied: {unknown[0]}")
        if model == "fail-429":
            return _openai_error(
                429, "Rate limit reached", "rate_limit_exceeded", **{"retry-after": "3"}
            )
        if model == "bad-input":
            return _openai_error(400, "'$.input' is invalid.", None, "input")
        raw = body["input"]
        items: list[Any] = [raw] if isinstance(raw, str) or isinstance(raw[0], int) else raw
        base64_out = body.get("encoding_format") == "base64" and model != "floats-only"
        data = []
        for i, item in enumerate(items):
            vector: Any = fake_vector(item, body.get("dimensions"))
            if base64_out:
                vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": vector})
        tokens = sum(words(x) if isinstance(x, str) else len(x) for x in items)
        reply: dict[str, Any] = {"object": "list", "data": data, "model": f"{model}-2024"}
        if model == "broken":
            reply = {"object": "list", "model": model}
        elif model != "no-usage":
            reply["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        return web.Response(body=orjson.dumps(reply), content_type="application/json")


_STUDIO_EMBED = re.compile(r"^/v1beta/models/([^/:]+):batchEmbedContents$")
_VERTEX_EMBED = re.compile(
    r"^/(v1)/projects/([^/]+)/locations/([^/]+)/publishers/google/models/([^/:]+):predict$"
)
_STUDIO_REQUEST = {"model", "content", "taskType", "title", "outputDimensionality"}
_VERTEX_INSTANCE = {"content", "task_type", "title"}
_VERTEX_PARAMETERS = {"outputDimensionality", "autoTruncate"}


class Invalid(Exception):
    pass


def _check_studio(body: Any, model: str) -> list[tuple[str, int | None]]:
    if not isinstance(body, dict) or set(body) != {"requests"}:
        raise Invalid("Invalid JSON payload received. Unknown name or missing requests.")
    requests = body["requests"]
    if not isinstance(requests, list) or not 0 < len(requests) <= 100:
        raise Invalid("* BatchEmbedContentsRequest.requests: at most 100 requests per batch")
    out = []
    for entry in requests:
        if not isinstance(entry, dict) or set(entry) - _STUDIO_REQUEST:
            raise Invalid("Invalid JSON payload received. Unknown name in requests[].")
        if entry.get("model") != f"models/{model}":
            raise Invalid("requests[].model must match the model in the URL")
        parts = entry.get("content", {}).get("parts")
        if not isinstance(parts, list) or len(parts) != 1 or set(parts[0]) != {"text"}:
            raise Invalid("content.parts must hold one text part")
        out.append((parts[0]["text"], entry.get("outputDimensionality")))
    return out


def _check_vertex(body: Any, model: str) -> list[tuple[str, int | None]]:
    if not isinstance(body, dict) or set(body) - {"instances", "parameters"}:
        raise Invalid("Invalid JSON payload received. Unknown name.")
    instances = body.get("instances")
    limit = 1 if model.startswith("gemini-embedding") else 250
    if not isinstance(instances, list) or not 0 < len(instances) <= limit:
        raise Invalid(f"Unable to submit request: at most {limit} instances per request")
    parameters = body.get("parameters", {})
    if set(parameters) - _VERTEX_PARAMETERS:
        raise Invalid("Invalid JSON payload received. Unknown name in parameters.")
    out = []
    for instance in instances:
        if set(instance) - _VERTEX_INSTANCE or not isinstance(instance.get("content"), str):
            raise Invalid("instances[].content must be a string")
        out.append((instance["content"], parameters.get("outputDimensionality")))
    return out


class FakeGeminiEmbeddings(FakeGemini):
    """The chat fake plus batchEmbedContents (AI Studio) and predict (Vertex AI)."""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        studio, vertex = _STUDIO_EMBED.match(request.path), _VERTEX_EMBED.match(request.path)
        if studio is None and vertex is None:
            return await super().handle(request)
        raw = await request.read()
        model = studio.group(1) if studio else vertex.group(4)  # type: ignore[union-attr]
        body = orjson.loads(raw)
        denied = self.admit(request, raw, body, model, vertex)
        if denied is not None:
            return denied
        failure = self.failure(model.removeprefix("embedding-"))
        if failure is not None:
            return failure
        try:
            texts = _check_vertex(body, model) if vertex else _check_studio(body, model)
        except Invalid as exc:
            return error_response(400, "INVALID_ARGUMENT", str(exc))
        vectors = [fake_vector(text, dims) for text, dims in texts]
        if studio:
            reply: dict[str, Any] = {"embeddings": [{"values": v} for v in vectors]}
        else:
            predictions = [
                {
                    "embeddings": {
                        "statistics": {"truncated": False, "token_count": words(text)},
                        "values": vector,
                    }
                }
                for (text, _), vector in zip(texts, vectors, strict=True)
            ]
            billable = sum(len(text) for text, _ in texts)
            reply = {"predictions": predictions, "metadata": {"billableCharacterCount": billable}}
        return web.Response(body=orjson.dumps(reply), content_type="application/json")


_TITAN_FIELDS = {"inputText", "dimensions", "normalize", "embeddingTypes"}
_COHERE_FIELDS = {
    "texts",
    "input_type",
    "truncate",
    "embedding_types",
    "output_dimension",
    "max_tokens",
}
_INPUT_TYPES = {"search_document", "search_query", "classification", "clustering"}


def _titan(model: str, body: Any) -> tuple[dict[str, Any], dict[str, str]] | str:
    allowed = {"inputText"} if "-v1" in model else _TITAN_FIELDS
    if not isinstance(body, dict) or set(body) - allowed:
        return "Malformed input request: extraneous key is not permitted"
    text = body.get("inputText")
    if not isinstance(text, str) or not text:
        return "Malformed input request: inputText must be a non-empty string"
    dimensions = body.get("dimensions", 1024)
    if dimensions not in (256, 512, 1024):
        return "Malformed input request: dimensions must be one of 256, 512, 1024"
    vector = fake_vector(text, dimensions)
    reply = {"embedding": vector, "inputTextTokenCount": words(text)}
    return {**reply, "embeddingsByType": {"float": vector}}, {}


def _cohere(model: str, body: Any) -> tuple[dict[str, Any], dict[str, str]] | str:
    if not isinstance(body, dict) or set(body) - _COHERE_FIELDS:
        return "Malformed input request: extraneous key is not permitted"
    texts = body.get("texts")
    if not isinstance(texts, list) or not 0 < len(texts) <= 96:
        return "Malformed input request: texts must hold 1 to 96 strings"
    if body.get("input_type") not in _INPUT_TYPES:
        return "Malformed input request: input_type is required"
    v4 = "-v4" in model
    if "output_dimension" in body and (
        not v4 or body["output_dimension"] not in (256, 512, 1024, 1536)
    ):
        return "Malformed input request: output_dimension is not supported"
    vectors = [fake_vector(text, body.get("output_dimension")) for text in texts]
    reply: dict[str, Any] = {"id": "emb-1", "texts": texts}
    if v4:
        reply.update(embeddings={"float": vectors}, response_type="embeddings_by_type")
    else:
        reply.update(embeddings=vectors, response_type="embeddings_floats")
    count = sum(words(text) for text in texts)
    return reply, {"X-Amzn-Bedrock-Input-Token-Count": str(count)}


class FakeBedrockEmbeddings(FakeBedrock):
    """The Converse fake plus InvokeModel for Titan Text and Cohere Embed, SigV4 verified."""

    async def invoke(self, request: web.Request) -> web.StreamResponse:
        encoded_model, _, operation = request.raw_path.removeprefix("/model/").rpartition("/")
        if operation != "invoke":
            return await super().invoke(request)
        raw = await request.read()
        rejection = self._authorize(request, raw)
        if rejection is not None:
            return rejection
        model = unquote(encoded_model)
        body = orjson.loads(raw)
        self.received.append(
            Received(request.method, request.raw_path, dict(request.headers), raw, body)
        )
        self.calls[model] += 1
        if model.startswith("throttle."):
            return aws_error(429, "ThrottlingException", "Too many requests, please wait.")
        if "titan-embed-text" in model:
            result = _titan(model, body)
        elif "cohere.embed" in model:
            result = _cohere(model, body)
        else:
            return aws_error(400, "ValidationException", "The provided model does not embed.")
        if isinstance(result, str):
            return aws_error(400, "ValidationException", result)
        reply, headers = result
        return web.Response(
            body=orjson.dumps(reply), content_type="application/json", headers=headers
        )
