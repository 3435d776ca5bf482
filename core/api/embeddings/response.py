"""The OpenAI embeddings response shape, and the float <-> base64 encoding clients expect.

OpenAI's base64 form is the vector as little-endian float32 bytes; the official Python SDK asks
for it by default (when the caller names no encoding_format) and decodes it with
`array("f", ...)` / numpy float32. Providers that only return floats get encoded here, so a
client sees the same bytes whichever target served it.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass
from typing import Any

from core.api.embeddings.request import EmbeddingRequest, EncodingFormat, estimate_input_tokens
from core.providers.adapters.base import JSON
from shared.errors import invalid_upstream

FLOAT32_MAX = 3.4028234663852886e38
Vector = list[float] | str  # floats, or base64 float32 already encoded upstream


@dataclass(slots=True)
class Embedded:
    """A complete OpenAI-shaped body, and whether its usage is our estimate."""

    body: JSON
    usage_estimated: bool = False


def float32_base64(values: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def check_vector(value: Any) -> Vector:
    if isinstance(value, str):
        return value
    if not isinstance(value, list) or not value:
        raise invalid_upstream("an embedding that is not a list of numbers")
    for number in value:
        if not isinstance(number, int | float) or isinstance(number, bool):
            raise invalid_upstream("an embedding that is not a list of numbers")
        if not -FLOAT32_MAX <= number <= FLOAT32_MAX:  # clients decode float32 (base64)
            raise invalid_upstream("an embedding value out of the float32 range")
    return value


def usage(prompt_tokens: int) -> JSON:
    return {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}


def openai_list(
    vectors: list[Vector], model: str, prompt_tokens: int | None, request: EmbeddingRequest
) -> Embedded:
    """The OpenAI body for translated providers; usage is estimated when they give none."""
    if len(vectors) != request.count:
        raise invalid_upstream(f"{len(vectors)} embeddings for {request.count} inputs")
    estimated = prompt_tokens is None
    tokens = estimate_input_tokens(request) if prompt_tokens is None else prompt_tokens
    data = [
        {"object": "embedding", "index": i, "embedding": vector} for i, vector in enumerate(vectors)
    ]
    body = {"object": "list", "data": data, "model": model, "usage": usage(tokens)}
    return Embedded(body, estimated)


def encode(body: JSON, encoding: EncodingFormat) -> JSON:
    """Vectors in the encoding the client asked for (float lists stay floats for 'float')."""
    if encoding != "base64":
        return body
    for item in body["data"]:
        vector = item["embedding"]
        if isinstance(vector, list):
            item["embedding"] = float32_base64(vector)
    return body
