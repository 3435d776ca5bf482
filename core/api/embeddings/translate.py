"""The contract every embeddings translator keeps: pure build and parse, no I/O.

One embeddings call may take several upstream requests (a provider that embeds one text per
call, or batches capped below OpenAI's 2048 inputs); `build` returns them all, the sender sends
them (signed, concurrently up to `parallel`), and `parse` gets the replies back in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from core.api.embeddings.request import EmbeddingRequest
from core.api.embeddings.response import Embedded
from core.providers.adapters.base import ProviderError, Target, UpstreamRequest

# One upstream reply: lower-cased headers and the body bytes.
Reply = tuple[Mapping[str, str], bytes]
# (param, message): why a target cannot serve a request, naming the field to blame.
Problem = tuple[str, str]


class Translator(Protocol):
    # Upstream calls in flight at once for one client request.
    parallel: int

    def params(self, target: Target) -> frozenset[str] | None:
        """Top-level params honoured besides model/input/encoding_format; None = all."""
        ...

    def problem(self, request: EmbeddingRequest, target: Target) -> Problem | None:
        """Why this target cannot serve this request (input kind, dimensions, model)."""
        ...

    def build(self, request: EmbeddingRequest, target: Target) -> list[UpstreamRequest]: ...

    def parse(self, replies: list[Reply], request: EmbeddingRequest, target: Target) -> Embedded:
        """The OpenAI body, vectors in input order; raises ProviderError on a bad reply."""
        ...

    def parse_error(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> ProviderError: ...
