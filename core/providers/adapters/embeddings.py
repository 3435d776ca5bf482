"""The contract every embeddings translator keeps: pure build and parse, no I/O.

What a translator is given (a validated `EmbeddingRequest`, core/api/embeddings/request.py
validates it) and what it returns (`Embedded`, an OpenAI-shaped body), as adapters/base.py is
for chat. One embeddings call may take several upstream requests (a provider that embeds one
text per call, or batches capped below OpenAI's 2048 inputs); `build` returns them all, the
sender (core/providers/embeddings_sender.py) sends them (signed, concurrently up to
`parallel`), and `parse` gets the replies back in order. The translators live beside each
kind's chat adapter: openai_embeddings.py (OpenAI-compatible and Azure), gemini/embeddings.py,
bedrock/embeddings.py, and core/providers/mock_embeddings.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from core.providers.adapters.base import JSON, ProviderError, Target, UpstreamRequest
from core.wire.tokens import MAX_RESERVATION_TOKENS, estimate_text
from shared.errors import invalid_upstream, upstream_object

# Always understood by the gateway, whatever the target.
GATEWAY_PARAMS = frozenset({"model", "input", "encoding_format"})

EncodingFormat = Literal["float", "base64"]


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    """A validated request. Exactly one of `texts` / `token_lists` is non-empty."""

    payload: JSON  # the client's body (trimmed of dropped params per attempt)
    model: str
    texts: tuple[str, ...]
    token_lists: tuple[list[int], ...]
    encoding_format: EncodingFormat
    dimensions: int | None

    @property
    def stream(self) -> bool:
        """Embeddings are always answered whole."""
        return False

    @property
    def uses_tokens(self) -> bool:
        return bool(self.token_lists)

    @property
    def count(self) -> int:
        return len(self.token_lists) if self.token_lists else len(self.texts)

    def extra_params(self) -> list[str]:
        """Top-level params beyond the gateway's own, ignoring explicit nulls."""
        return [k for k, v in self.payload.items() if k not in GATEWAY_PARAMS and v is not None]


def estimate_input_tokens(request: EmbeddingRequest) -> int:
    """Token ids count exactly; text is estimated (about four characters a token)."""
    if request.token_lists:
        total = sum(len(tokens) for tokens in request.token_lists)
    else:
        total = sum(estimate_text(text) for text in request.texts)
    return min(total, MAX_RESERVATION_TOKENS)


Vector = list[float] | str  # floats, or base64 float32 already encoded upstream


@dataclass(slots=True)
class Embedded:
    """A complete OpenAI-shaped body, and whether its usage is our estimate."""

    body: JSON
    usage_estimated: bool = False


FLOAT32_MAX = 3.4028234663852886e38


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


# One upstream reply: lower-cased headers and the body bytes.
Reply = tuple[Mapping[str, str], bytes]
# (param, message): why a target cannot serve a request, naming the field to blame.
Problem = tuple[str, str]


# One reply's payload (with its headers) -> its vectors and token count (None: not reported).
ReplyParser = Callable[[Mapping[str, str], JSON], tuple[list[Vector], int | None]]


def collect(
    replies: list[Reply], request: EmbeddingRequest, model: str, parse_one: ReplyParser
) -> Embedded:
    """The OpenAI body from several replies: their vectors in order, and the sum of their
    token counts (estimated when any reply reported none)."""
    vectors: list[Vector] = []
    tokens: int | None = 0
    for headers, body in replies:
        payload = upstream_object(
            body, "a response that is not JSON", "a response that is not a JSON object"
        )
        found, count = parse_one(headers, payload)
        vectors.extend(found)
        tokens = None if tokens is None or count is None else tokens + count
    return openai_list(vectors, model, tokens, request)


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
