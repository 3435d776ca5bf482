"""The contract of the media translators (images, speech, transcriptions): pure build and
parse, no I/O, as adapters/embeddings.py is for embeddings.

A translator says whether a target can serve a request (`problem`: the target's provider has
no such API, or its model does not make images or audio), builds the one upstream request,
and reads the one reply (`parse`, complete answers) or leaves the body to be relayed as bytes
(speech). The requests themselves are validated by core/api/images and core/api/audio; the
translators live beside each kind's chat adapter (openai_media.py for OpenAI-compatible hosts
and Azure, gemini/images.py, bedrock/images.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from core.providers.adapters.base import JSON, ProviderError, Target, UpstreamRequest
from shared.errors import invalid_upstream

Q = TypeVar("Q", contravariant=True)

_BASE64 = re.compile(r"[A-Za-z0-9+/=\r\n]+")
# (param, message): why a target cannot serve a request, naming the field to blame.
Problem = tuple[str, str]
# One upstream reply: its headers and body bytes.
Reply = tuple[Mapping[str, str], bytes]


@dataclass(slots=True)
class MediaResult:
    """A complete answer in OpenAI's shape, and the canonical usage to account: token counts
    where the provider bills tokens, `images` or `seconds` where it bills those units."""

    body: JSON
    usage: dict[str, Any] = field(default_factory=dict)
    usage_estimated: bool = False


class MediaTranslator(Protocol[Q]):
    def problem(self, request: Q, target: Target) -> Problem | None:
        """Why this target cannot serve this request; None when it can."""
        ...

    def build(self, request: Q, target: Target) -> UpstreamRequest: ...

    def parse_error(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> ProviderError: ...


def image_item(b64: Any, as_url: bool, mime: str = "image/png") -> JSON:
    """One generated image as OpenAI's `data[]` item. A provider that returns bytes only
    cannot give a hosted URL: `url` is then a data: URL of the same bytes (README: Images)."""
    if not isinstance(b64, str) or not b64:
        raise invalid_upstream("an image without base64 data")
    if _BASE64.fullmatch(b64, 0, 4096) is None:  # a prefix: the client decodes the rest
        raise invalid_upstream("an image whose data is not base64")
    if as_url:
        return {"url": f"data:{mime};base64,{b64}"}
    return {"b64_json": b64}
