"""The adapter contract: pure translation between the canonical (OpenAI) shape and a provider.

Adapters never do I/O. The HTTP layer (core.upstream) sends what `build_request` returns, and
hands status, headers and bytes back to `parse_response` / `parse_error`, or decoded stream
events to a per-request `StreamParser`. Signing (SigV4) is a separate step after the build.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

from shared.config import ProviderConfig
from shared.errors import FailureClass, GatewayError
from shared.secret import Secret

Framing = Literal["sse", "aws-eventstream"]
JSON = dict[str, Any]
S = TypeVar("S")


@dataclass(slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Target:
    """One concrete place a model can be served: a provider, its model id and a key."""

    provider: ProviderConfig
    model: str
    api_key: Secret | None
    # True for a `provider/<any name>` target a tenant named (allow_any_model): its health is
    # tracked per provider, so tenant-chosen names never create per-name state.
    dynamic: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.api_key, str):  # plaintext handed in by a caller: wrap it at once
            object.__setattr__(self, "api_key", Secret(self.api_key))

    @property
    def label(self) -> str:
        return f"{self.provider.name}/{self.model}"

    @property
    def health_label(self) -> str:
        """The key for breakers, latency and metrics: the configured target, or one
        `<provider>/*` entry for every dynamic name of that provider."""
        return f"{self.provider.name}/*" if self.dynamic else self.label


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a target can serve; failover only picks targets that can serve the request."""

    stream: bool = True
    tools: bool = True
    vision: bool = True
    json_schema: bool = True
    json_object: bool = True
    max_context: int | None = None
    # Remote http(s) image URLs accepted as-is; False: the core inlines them as data URLs first.
    image_urls: bool = True
    embeddings: bool = False
    max_n: int | None = None  # most choices per request; None = no limit
    # Top-level OpenAI request params the target honours; None = all (OpenAI itself).
    params: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One framed event: an SSE event (name, data) or an AWS event-stream message."""

    event: str | None
    data: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


class ProviderError(GatewayError):
    """An upstream failure, already mapped to a client-facing status and a failure class."""

    def __init__(
        self,
        status: int,
        message: str,
        failure_class: FailureClass,
        *,
        code: str | None = None,
        param: str | None = None,
        type: str | None = None,
        retry_after_s: float | None = None,
        upstream_status: int | None = None,
    ) -> None:
        super().__init__(
            status, message, code=code, param=param, type=type, failure_class=failure_class
        )
        self.failure_class: FailureClass = failure_class
        self.retry_after_s = retry_after_s
        self.upstream_status = upstream_status
        # Filled in by dispatch for accounting: which target failed, after how many attempts.
        self.target: Target | None = None
        self.attempts = 1
        # Set by core.scrub once the message, code, param and type are safe to show a tenant.
        self.sanitized = False
        if retry_after_s is not None and status in (429, 503):
            # Clients (and the official SDKs' own retry loops) read this header.
            self.headers["retry-after"] = str(max(1, math.ceil(retry_after_s)))


class StreamParser(Protocol):
    def feed(self, event: StreamEvent) -> list[JSON]:
        """Canonical chunks for one upstream event; raises ProviderError for in-stream errors."""
        ...

    def finish(self) -> list[JSON]:
        """Chunks owed at the end; raises ProviderError if the stream ended before completing."""
        ...


class EventDecoder(Protocol):
    """Bytes in, framed events out; keeps state across arbitrary write boundaries."""

    def feed(self, chunk: bytes) -> list[StreamEvent]: ...

    def finish(self) -> list[StreamEvent]: ...


class RequestSigner(Protocol):
    """Signs a built request (e.g. SigV4). Runs after the pure build, may await credentials."""

    async def sign(self, request: UpstreamRequest) -> UpstreamRequest: ...


class Adapter(Protocol):
    """Stream parsers emit canonical chunks: a first chunk with the assistant role, deltas,
    a chunk carrying finish_reason, and last a usage chunk with `choices: []`."""

    kind: str
    framing: Framing

    def decoder(self) -> EventDecoder:
        """A fresh stream decoder (SSE for most; AWS event-stream for Bedrock)."""
        ...

    def make_signer(self, provider: ProviderConfig) -> RequestSigner | None:
        """Built once at start-up; None when requests need no signing."""
        ...

    def check_provider(self, provider: ProviderConfig) -> object:
        """Start-up validation: parses the provider's options (and checks its other settings)
        into the kind's typed, frozen settings, or raises ConfigError naming the key. The
        core keeps the result on `provider.settings` (core/startup.py)."""
        ...

    def capabilities(self, target: Target) -> Capabilities: ...

    def build_request(self, canonical: JSON, target: Target) -> UpstreamRequest: ...

    def parse_response(self, body: bytes, target: Target) -> JSON: ...

    def stream_parser(self, canonical: JSON, target: Target) -> StreamParser: ...

    def parse_error(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> ProviderError: ...


def settings_of(provider: ProviderConfig, kind: type[S], parse: Callable[[ProviderConfig], S]) -> S:
    """A provider's typed settings: those parsed at start-up (core/startup.py), else parsed now
    for a provider built outside start-up (unit tests, tools such as core/captable.py)."""
    settings = provider.settings
    return settings if isinstance(settings, kind) else parse(provider)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Retry-After (seconds form) or retry-after-ms; HTTP-date form is ignored (rare upstream)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw:
        try:
            return max(0.0, float(raw))
        except ValueError:
            return None
    return None


def failure_class_for_status(status: int) -> FailureClass:
    """The default mapping when a provider's body says nothing more specific."""
    if status == 429:
        return FailureClass.RATE_LIMIT
    if status in (401, 403):
        return FailureClass.AUTH
    if status in (408, 504):
        return FailureClass.TIMEOUT
    if status >= 500:
        return FailureClass.TRANSIENT
    return FailureClass.CLIENT_ERROR


_OPENAI_CODES = {
    FailureClass.RATE_LIMIT: "rate_limit_exceeded",
    FailureClass.QUOTA_EXHAUSTED: "insufficient_quota",
    FailureClass.CONTEXT_LENGTH: "context_length_exceeded",
    FailureClass.CONTENT_FILTER: "content_filter",
    FailureClass.TIMEOUT: "upstream_timeout",
    FailureClass.TRANSIENT: "upstream_unavailable",
    FailureClass.AUTH: "upstream_auth_failed",
}


def openai_code_for(failure_class: FailureClass) -> str | None:
    """The `code` OpenAI clients expect for a failure, for providers whose own error codes
    mean nothing to them (Anthropic's `rate_limit_error` is not OpenAI's `rate_limit_exceeded`).
    Client errors keep no code: the message and param say what was wrong."""
    return _OPENAI_CODES.get(failure_class)


def client_status_for(failure_class: FailureClass, upstream_status: int) -> int:
    """What the tenant sees: upstream auth problems are the operator's, not the tenant's."""
    if failure_class is FailureClass.AUTH:
        return 502
    if failure_class is FailureClass.TIMEOUT:
        return 504
    if failure_class is FailureClass.TRANSIENT:
        return 503 if upstream_status in (503, 529) else 502
    if failure_class in (FailureClass.RATE_LIMIT, FailureClass.QUOTA_EXHAUSTED):
        return 429
    if 400 <= upstream_status < 500:
        return upstream_status
    return 400
