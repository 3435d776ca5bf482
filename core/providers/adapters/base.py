"""The adapter contract: pure translation between the canonical (OpenAI) shape and a provider.

Adapters never do I/O. The HTTP layer (core.providers.upstream) sends what `build_request` returns,
and hands status, headers and bytes back to `parse_response` / `parse_error`, or decoded stream
events to a per-request `StreamParser`. Signing (SigV4) is a separate step after the build.

Errors are not defined here: ProviderError and the upstream status mapping live in
shared.errors (the one error module, with the hierarchy in its docstring) and are re-exported
for the adapters and their callers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from core.wire.prompt_cache import CacheSupport
from shared.config import ProviderConfig
from shared.errors import ProviderError as ProviderError
from shared.errors import client_status_for as client_status_for
from shared.errors import failure_class_for_status as failure_class_for_status
from shared.errors import openai_code_for as openai_code_for
from shared.errors import retry_after_seconds as retry_after_seconds
from shared.secret import Secret

if TYPE_CHECKING:  # the Provider holds an adapter: imported for annotations only
    from core.providers.provider import Provider

JSON = dict[str, Any]
S = TypeVar("S")


class BodySource(Protocol):
    """A body too large to hold (a spooled upload): opened afresh for every send, so a retry
    or a failover sends it again from its start; its headers carry its Content-Length."""

    def open(self) -> AsyncIterator[bytes]: ...


@dataclass(slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    stream: BodySource | None = None  # sent instead of `body` when set


@dataclass(frozen=True, slots=True)
class Target:
    """One concrete place a model can be served: a provider, its model id and a key."""

    provider: Provider
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
    # Prompt-cache marks taken at their position (Anthropic) or as cache points (Converse),
    # with the model's limits; None: marks are removed (OpenAI-style hosts cache by themselves).
    prompt_cache: CacheSupport | None = None


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One framed event: an SSE event (name, data) or an AWS event-stream message."""

    event: str | None
    data: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


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

    def decoder(self, max_event_bytes: int) -> EventDecoder:
        """A fresh stream decoder (SSE for most; AWS event-stream for Bedrock) that refuses
        any event larger than `max_event_bytes` (core.resilience.max_event_bytes)."""
        ...

    def check_provider(self, provider: ProviderConfig) -> object:
        """Start-up validation: parses the provider's options (and checks its other settings)
        into the kind's typed, frozen settings, or raises ConfigError naming the key. The
        core keeps the result on the Provider its targets carry (core/providers/provider.py),
        where the adapter reads it per request with `settings_of`."""
        ...

    def make_signer(self, settings: object) -> RequestSigner | None:
        """From the settings `check_provider` returned, once at start-up; None when requests
        need no signing."""
        ...

    def capabilities(self, target: Target) -> Capabilities: ...

    def build_request(self, canonical: JSON, target: Target) -> UpstreamRequest: ...

    def parse_response(self, body: bytes, target: Target) -> JSON: ...

    def stream_parser(self, canonical: JSON, target: Target) -> StreamParser: ...

    def parse_error(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> ProviderError: ...


def settings_of(provider: Provider, kind: type[S]) -> S:
    """A provider's typed settings, parsed once when the Provider was built: never again per
    request."""
    return as_settings(provider.settings, kind)


def as_settings(settings: object, kind: type[S]) -> S:
    """`settings` as the kind an adapter's `check_provider` returns. Anything else is a wiring
    bug (a Provider built without its adapter's settings), not a config error."""
    if not isinstance(settings, kind):
        raise TypeError(f"expected {kind.__name__} settings, got {type(settings).__name__}")
    return settings


def stop_sequences(
    canonical: JSON, invalid: Callable[[str, str], ProviderError]
) -> list[str] | None:
    """OpenAI's `stop` (a string or a list of strings) as the list every other provider takes;
    None when absent or empty. `invalid` is the adapter's own 400 factory."""
    stop = canonical.get("stop")
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return stop or None
    if stop is None:
        return None
    raise invalid("stop must be a string or an array of strings", "stop")
