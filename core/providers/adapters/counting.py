"""The contract every token counter keeps: pure build and parse, no I/O.

`POST /v1/messages/count_tokens` (core/api/count_tokens/) asks a route's targets how many input
tokens a Messages request would take. Providers that can say so have a counting API of their
own: Anthropic's `/v1/messages/count_tokens`, Gemini's `:countTokens`, Bedrock's
`/model/{id}/count-tokens`. A counter translates the request for one of them and reads the
answer; sending is the provider's transport, as for every other call, so signing (SigV4,
Vertex tokens), timeouts, error mapping and scrubbing are chat's. The counters live beside
each kind's chat adapter (anthropic/counting.py, gemini/counting.py, bedrock/counting.py);
targets whose kind has none are counted by the gateway's estimate (core/api/count_tokens).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from core.providers.adapters.base import JSON, ProviderError, Target, UpstreamRequest
from shared.errors import Api, invalid_upstream, upstream_object


@dataclass(frozen=True, slots=True)
class CountInput:
    """What is counted: the client's own request in the shape of the API it called (`api`:
    "anthropic", a Messages request; "openai", a Responses request with its history inlined),
    its bytes and Anthropic headers (a provider speaking that API is sent them), and its
    canonical translation (OpenAI chat shape, as every translated adapter reads it; None when
    no target of the route needs it)."""

    payload: JSON
    raw: bytes
    client_headers: Mapping[str, str]
    canonical: JSON | None
    api: Api = "anthropic"

    def own_body(self, model: str) -> bytes:
        """The client's request for a target serving `model`: its own bytes when the model is
        the one it named, else re-encoded with the target's."""
        if self.payload.get("model") == model:
            return self.raw
        return orjson.dumps({**self.payload, "model": model})


@dataclass(frozen=True, slots=True)
class Counted:
    """The input tokens, and the upstream's own answer when it is already the client's format
    (Anthropic's, relayed as its bytes); None: the gateway writes `{"input_tokens": N}`."""

    input_tokens: int
    body: bytes | None = None
    estimated: bool = False


class Counter(Protocol):
    def problem(self, target: Target) -> str | None:
        """Why this target cannot count (a model its provider's counting API refuses), or
        None. A target with a problem is skipped when planning, never tried."""
        ...

    def build(self, request: CountInput, target: Target) -> UpstreamRequest:
        """The upstream request (unsigned: the transport's signer signs it). Raises
        GatewayError (a 400 naming the field) for what the target cannot take."""
        ...

    def parse(self, body: bytes, target: Target) -> Counted:
        """The count from a successful reply; a reply without one raises ProviderError
        (`invalid_upstream`), which fails over like any bad reply."""
        ...

    def parse_error(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> ProviderError: ...

    def refused(self, error: ProviderError) -> bool:
        """Whether `error` is the provider declining to count for this model (support that
        varies by model and region, which planning cannot know), not a fault of the request:
        the gateway's estimate answers instead of a client error."""
        ...


def reply_count(body: bytes, field: str) -> int:
    """The non-negative integer `field` of a JSON object reply (`totalTokens`, `inputTokens`,
    `input_tokens`)."""
    reply: dict[str, Any] = upstream_object(
        body, "a response that is not JSON", "a response that is not a JSON object"
    )
    tokens = reply.get(field)
    if type(tokens) is not int or tokens < 0:
        raise invalid_upstream(f"a count without a valid {field}")
    return tokens
