"""Embeddings from the built-in `mock` provider: deterministic, unit length, no network.

Each vector is seeded by a hash of (model, input), so the same input always embeds the same
way (across processes too: no Python hash()), and different inputs are nearly orthogonal.
Values are rounded to float32, so the float and base64 encodings decode to identical numbers,
as with OpenAI. Usage is the same estimate admission uses: exact for token ids.
"""

from __future__ import annotations

import hashlib
import math
import struct

from core.providers.adapters.base import Target
from core.providers.adapters.embeddings import (
    Embedded,
    EmbeddingRequest,
    Problem,
    Vector,
    estimate_input_tokens,
    openai_list,
)

DEFAULT_DIMENSIONS = 256
MAX_DIMENSIONS = 4096


def pseudo_embedding(seed: bytes, dimensions: int) -> list[float]:
    raw = hashlib.shake_256(seed).digest(2 * dimensions)
    centred = [(v - 32767.5) / 32767.5 for v in struct.unpack(f"<{dimensions}H", raw)]
    norm = math.sqrt(sum(v * v for v in centred)) or 1.0
    unit = [v / norm for v in centred]
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *unit)))


class MockEmbeddings:
    def params(self, target: Target) -> frozenset[str] | None:
        return None  # like the mock chat provider: it ignores what it cannot act on

    def problem(self, request: EmbeddingRequest, target: Target) -> Problem | None:
        if request.dimensions is not None and request.dimensions > MAX_DIMENSIONS:
            return "dimensions", f"{target.label} supports at most {MAX_DIMENSIONS} dimensions"
        return None

    def embed(self, request: EmbeddingRequest, target: Target) -> Embedded:
        dimensions = request.dimensions or DEFAULT_DIMENSIONS
        prefix = target.model.encode() + b"\0"
        seeds = (
            [prefix + b"t" + ",".join(map(str, t)).encode() for t in request.token_lists]
            if request.token_lists
            else [prefix + b"s" + text.encode("utf-8", "surrogatepass") for text in request.texts]
        )
        vectors: list[Vector] = [pseudo_embedding(seed, dimensions) for seed in seeds]
        return openai_list(vectors, target.model, estimate_input_tokens(request), request)


MOCK = MockEmbeddings()
