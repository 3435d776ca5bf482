"""The float <-> base64 encoding clients expect of an OpenAI embeddings response.

The response shape itself (`Embedded`, `openai_list`) is the translators' contract
(core/providers/adapters/embeddings.py).

OpenAI's base64 form is the vector as little-endian float32 bytes; the official Python SDK asks
for it by default (when the caller names no encoding_format) and decodes it with
`array("f", ...)` / numpy float32. Providers that only return floats get encoded here, so a
client sees the same bytes whichever target served it.
"""

from __future__ import annotations

import base64
import struct

from core.providers.adapters.base import JSON
from core.providers.adapters.embeddings import EncodingFormat

__all__ = ["encode", "float32_base64"]


def float32_base64(values: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def encode(body: JSON, encoding: EncodingFormat) -> JSON:
    """Vectors in the encoding the client asked for (float lists stay floats for 'float')."""
    if encoding != "base64":
        return body
    for item in body["data"]:
        vector = item["embedding"]
        if isinstance(vector, list):
            item["embedding"] = float32_base64(vector)
    return body
