"""OpenAI-compatible hosts (kind `openai`, every preset) and Azure OpenAI: POST .../embeddings.

The body passes through with `model` rewritten; the URL, auth and error mapping are the chat
adapters' own (the embeddings path sits where /chat/completions does, Azure's deployments and
v1 styles included). The reply is relayed as-is once it has data[]; missing usage is estimated.

Per-host facts (presets.py explains where chat facts come from):
- deepseek and groq publish no embeddings endpoint: their targets are skipped.
- Token-id input and `encoding_format: base64` are documented by OpenAI, Azure and vLLM; an
  unknown host (the generic preset) gets everything, as chat does. Other presets get text only,
  and are asked for floats (encoding_format withheld) which the gateway encodes itself when the
  client asked for base64, so hosts that reject or ignore base64 still answer correctly.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from core.providers.adapters.azure import ADAPTER as AZURE_ADAPTER
from core.providers.adapters.base import ProviderError, Target, UpstreamRequest
from core.providers.adapters.embeddings import (
    Embedded,
    EmbeddingRequest,
    Problem,
    Reply,
    check_vector,
    estimate_input_tokens,
    usage,
)
from core.providers.adapters.openai_compat import ADAPTER as OPENAI_ADAPTER
from core.providers.adapters.openai_compat import OpenAICompatAdapter
from core.wire.tokens import reported_tokens
from shared.errors import invalid_upstream

NO_EMBEDDINGS = frozenset({"deepseek", "groq"})
FULL_API = frozenset({"openai", "vllm", "openai-compatible"})


def embeddings_url(chat_url: str) -> str:
    """The chat adapter's URL with /chat/completions swapped for /embeddings (query kept)."""
    path, sep, query = chat_url.partition("?")
    return path.removesuffix("/chat/completions") + "/embeddings" + sep + query


def parse_openai_body(body: bytes, request: EmbeddingRequest) -> Embedded:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise invalid_upstream("a response that is not JSON") from None
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list) or len(data) != request.count:
        raise invalid_upstream("a response without one embedding per input")
    for item in data:
        if not isinstance(item, dict):
            raise invalid_upstream("a malformed embedding")
        item["embedding"] = check_vector(item.get("embedding"))
    tokens = payload.get("usage")
    prompt = reported_tokens(tokens.get("prompt_tokens")) if isinstance(tokens, dict) else None
    if prompt is not None:
        payload["usage"] = {**tokens, "prompt_tokens": prompt}
        payload["usage"]["total_tokens"] = reported_tokens(tokens.get("total_tokens")) or prompt
        return Embedded(payload)
    payload["usage"] = usage(estimate_input_tokens(request))
    return Embedded(payload, usage_estimated=True)


class OpenAIEmbeddings:
    parallel = 1

    def __init__(self, adapter: OpenAICompatAdapter = OPENAI_ADAPTER) -> None:
        self.adapter = adapter

    def full_api(self, target: Target) -> bool:
        return self.adapter.preset(target.provider).name in FULL_API

    def params(self, target: Target) -> frozenset[str] | None:
        return None  # the host knows its own params, as for chat without a param list

    def problem(self, request: EmbeddingRequest, target: Target) -> Problem | None:
        preset = self.adapter.preset(target.provider).name
        if preset in NO_EMBEDDINGS:
            return "model", f"{target.label} has no embeddings API"
        if request.uses_tokens and not self.full_api(target):
            return "input", f"{target.label} does not take token ids as input"
        return None

    def build(self, request: EmbeddingRequest, target: Target) -> list[UpstreamRequest]:
        body = dict(request.payload)
        body["model"] = target.model
        if not self.full_api(target):
            body.pop("encoding_format", None)  # floats, encoded here if base64 was asked
        headers = {
            "content-type": "application/json",
            "accept": "application/json",
            **target.provider.headers,
            **self.adapter.auth_headers(target),
        }
        url = embeddings_url(self.adapter.url(target))
        return [UpstreamRequest("POST", url, headers, orjson.dumps(body))]

    def parse(self, replies: list[Reply], request: EmbeddingRequest, target: Target) -> Embedded:
        [(_, body)] = replies
        return parse_openai_body(body, request)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        return self.adapter.parse_error(status, headers, body)


class AzureEmbeddings(OpenAIEmbeddings):
    """Azure OpenAI serves OpenAI's embeddings API in full (token ids, base64)."""

    def __init__(self) -> None:
        super().__init__(AZURE_ADAPTER)

    def full_api(self, target: Target) -> bool:
        return True

    def problem(self, request: EmbeddingRequest, target: Target) -> Problem | None:
        return None


OPENAI = OpenAIEmbeddings()
AZURE = AzureEmbeddings()
