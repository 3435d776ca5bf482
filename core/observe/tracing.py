"""Traces: the seam between the pipeline and OpenTelemetry (the SDK itself is in
core.observe.otel, imported only when tracing is on).

Off (the default), `build_tracer` returns NO_TRACER, whose `request` is None for every
request: no span object is made and no SDK call runs; the runner pays one `if trace is None`
per stage, the dispatcher one per attempt. A request the sampler leaves out is served the same
way. What remains when off is W3C propagation, which costs no SDK: the upstream request
carries the traceparent the core received, unchanged (what a non-participating intermediary
must do), so a provider's own traces still join the client's.

On, one request is one trace part (core.observe.otel):

    SERVER  POST /v1/chat/completions        (continues the edge's traceparent)
      INTERNAL interlock.cache / admit / dispatch   (the stages that take time)
        CLIENT   chat gpt-4o                  (one per upstream attempt; its traceparent is
                                               on the upstream request)
          INTERNAL interlock.image_fetch      (remote images, fetched once per request)

Where spans are made: the runner's loop (core.pipeline.run) for the server span and the
stages, the dispatcher's attempt loop (core.resilience.dispatch) for attempts, and the image
inliner wrapped once at start-up (core.app); never per API.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from core.pipeline.exchange import Exchange
    from core.pipeline.stages import Stage
    from core.providers.adapters.base import ProviderError, Target
    from shared.config_tracing import TracingConfig

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

# The traceparent the next upstream request carries (core.providers.transport): the received
# one when the request is not traced, the attempt span's when it is.
OUTBOUND: ContextVar[str | None] = ContextVar("interlock_outbound_traceparent", default=None)
# The traced request this task serves, for the dispatcher's attempt hook; None when untraced.
ACTIVE: ContextVar[RequestTrace | None] = ContextVar("interlock_trace", default=None)


class RequestTrace(Protocol):
    """One traced request: its server span, and the spans made under it."""

    async def stage(self, stage: Stage, x: Exchange[Any, Any, Any]) -> None:
        """Runs the stage, in a span of its own if it is one that takes time."""

    async def attempt(self, work: Awaitable[T], target: Target, reason: str, streaming: bool) -> T:
        """Awaits one upstream attempt in a CLIENT span (its traceparent on the request);
        `reason` says why it was made: first, retry, rotate_key or failover."""

    def skipped(self, target: Target, error: ProviderError) -> None:
        """A target the dispatcher could not try (circuit open, no key capacity)."""

    def responded(self, x: Exchange[Any, Any, Any], status: int, headers: Any, open_: bool) -> None:
        """The response is built: ends the trace, unless `open_` (a stream, ended by
        `finished` when the stream ends)."""

    def finished(
        self,
        x: Exchange[Any, Any, Any],
        usage: dict[str, Any] | None,
        status: str,
        error: ProviderError | None,
    ) -> None:
        """A stream's end (however it ended); a no-op once the trace has ended."""

    def failed(self, x: Exchange[Any, Any, Any], error: BaseException, status: int | None) -> None:
        """The request left with an error (a GatewayError's `status`, or none)."""


class Tracer(Protocol):
    """Chosen once at start-up: NO_TRACER, or core.observe.otel.OtelTracer."""

    def request(self, x: Exchange[Any, Any, Any]) -> RequestTrace | None:
        """The request's trace, or None when it is not traced (tracing off, or not sampled)."""

    def wrap(self, name: str, fn: F) -> F:
        """`fn` (an async call on the request's path) in a span named `name`; `fn` itself
        when tracing is off, so wrapping costs nothing then."""

    async def shutdown(self) -> None:
        """Exports what is still buffered (at the end of the core's lifespan)."""


async def traced(
    trace: RequestTrace | None, sent: Awaitable[T], target: Target, reason: str, streaming: bool
) -> T:
    """One upstream try (the dispatcher's hook): awaited as it is when the request is not
    traced, in its CLIENT span when it is."""
    if trace is None:
        return await sent
    return await trace.attempt(sent, target, reason, streaming)


class NoTracer:
    """Tracing off: nothing is made, nothing is called per request beyond `request`."""

    def request(self, x: Exchange[Any, Any, Any]) -> None:
        return None

    def wrap(self, name: str, fn: F) -> F:
        return fn

    async def shutdown(self) -> None:
        return None


NO_TRACER: Tracer = NoTracer()


def build_tracer(config: TracingConfig) -> Tracer:
    """NO_TRACER unless `tracing` is enabled (interlock.yaml or OTEL_* variables); only then is
    the OpenTelemetry SDK imported, and the OTLP exporter for the configured protocol."""
    if not config.enabled or config.sample_ratio <= 0:
        return NO_TRACER
    from core.observe.otel import OtelTracer, otlp_exporter

    return OtelTracer(config, otlp_exporter(config))
