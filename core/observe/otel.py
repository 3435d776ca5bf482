"""The OpenTelemetry side of core.observe.tracing: imported only when tracing is on.

The core keeps a TracerProvider of its own (never the global one: a library's stray spans are
not the gateway's) with a batch processor, whose thread does the exporting: ending a span on
the event loop is a deque append, never I/O.

Sampling is decided before any span exists, from the trace id alone (the ratio test of the
SDK's TraceIdRatioBased, parent-based): a parent that says "not sampled" is honoured, and
every other trace, the ones clients started and the ones the core starts, is kept at
`tracing.sample_ratio`; a tenant cannot make the gateway trace all its requests by sending
sampled traceparents. An unsampled request gets no trace object at all (as if tracing were
off), and every replica decides the same for the same trace.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from contextvars import ContextVar
from typing import Any, TypeVar

from opentelemetry import context, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

from core.observe import genai
from core.observe.tracing import OUTBOUND, F, RequestTrace
from core.pipeline.exchange import Exchange
from core.pipeline.stages import Stage
from core.providers.adapters.base import ProviderError, Target
from shared import traceparent as w3c
from shared.config_tracing import TracingConfig

T = TypeVar("T")
AnyExchange = Exchange[Any, Any, Any]

# The stages that take time get a span each; the others run in microseconds.
TIMED_STAGES = frozenset({"cache", "admit", "dispatch"})
_LOW64 = (1 << 64) - 1
_HEADER_PREFIX = "x-interlock-"
# x-interlock-* headers recorded otherwise: as numbers, from the outcome.
_NOT_FROM_HEADERS = frozenset(
    {"x-interlock-attempts", "x-interlock-failovers", "x-interlock-retries"}
)


# The trace id the next root span must have (the one the request was given at the hop).
_PINNED: ContextVar[int | None] = ContextVar("interlock_pinned_trace_id", default=None)


class _PinnedTraceIds(RandomIdGenerator):
    """A request that came without trace context was given a trace id at the hop (its log
    lines and ledger record carry it): the core's root span takes that id, not a new one.
    Other new traces (none in practice: every request has one) get the SDK's."""

    def generate_trace_id(self) -> int:
        pinned = _PINNED.get()
        return pinned if pinned is not None else super().generate_trace_id()

    def generate_span_id(self) -> int:
        """From a PRNG seeded per process (span ids need uniqueness, not secrecy), not a
        getrandom syscall per span."""
        return w3c.new_span_id()


def otlp_exporter(config: TracingConfig) -> SpanExporter:
    """OTLP over HTTP (protobuf) or gRPC; with no endpoint configured the exporter reads the
    standard OTEL_EXPORTER_OTLP_* variables itself (endpoint, headers, TLS, timeout)."""
    if config.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        insecure = config.endpoint.startswith("http://") if config.endpoint else None
        return GrpcExporter(endpoint=config.endpoint, insecure=insecure)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=config.endpoint)


class OtelTracer:
    """core.observe.tracing.Tracer over the SDK."""

    def __init__(
        self,
        config: TracingConfig,
        exporter: SpanExporter,
        processor: SpanProcessor | None = None,
    ) -> None:
        resource = Resource.create({"service.name": config.service_name})
        self._provider = TracerProvider(
            resource=resource, sampler=ALWAYS_ON, id_generator=_PinnedTraceIds()
        )
        self._provider.add_span_processor(processor or BatchSpanProcessor(exporter))
        self.tracer = self._provider.get_tracer("interlock", schema_url=genai.SCHEMA_URL)
        self.capture_content = config.capture_content
        self._bound = TraceIdRatioBased.get_bound_for_rate(config.sample_ratio)

    def sampled(self, traceparent: str | None) -> bool:
        """The ratio decision for the trace (parent-based: an unsampled parent stays so)."""
        if not traceparent:
            return True  # a new root (tests that build a Caller by hand): the SDK picks its id
        if not int(traceparent[54], 16) & 1:
            return False
        return int(traceparent[3:35], 16) & _LOW64 < self._bound

    def request(self, x: AnyExchange) -> RequestTrace | None:
        if not self.sampled(x.caller.traceparent):
            return None
        return OtelRequest(self, x)

    def wrap(self, name: str, fn: F) -> F:
        tracer = self.tracer

        async def traced(*args: Any, **kwargs: Any) -> Any:
            span = tracer.start_span(f"interlock.{name}", kind=SpanKind.INTERNAL)
            try:
                return await fn(*args, **kwargs)
            except BaseException as error:
                _failure(span, error)  # not the exception's text: it may quote an image URL
                raise
            finally:
                span.end()

        return traced  # type: ignore[return-value]

    async def shutdown(self) -> None:
        await asyncio.to_thread(self._provider.shutdown)  # joins the export thread


def _parent(x: AnyExchange) -> Context:
    """The server span's parent: the caller's span (its traceparent, forwarded by the edge),
    or none (a new trace, whose id the hop already gave the request: pinned)."""
    traceparent = x.caller.traceparent
    if not traceparent or w3c.parse(x.http.headers.get(w3c.HEADER)) is None:
        if traceparent:
            _PINNED.set(int(traceparent[3:35], 16))  # this request's task only
        return Context()
    parent = SpanContext(
        trace_id=int(traceparent[3:35], 16),
        span_id=int(traceparent[36:52], 16),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(NonRecordingSpan(parent))


def _traceparent(span: Span) -> str:
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"


def _failure(span: Span, error: BaseException, upstream: bool = False) -> None:
    """error.type (the failure class, else the exception's type) and the status: the
    provider's own on an attempt span (`upstream`), the gateway's answer on the others."""
    failure = getattr(error, "failure_class", None)
    span.set_attribute(genai.ERROR_TYPE, str(failure or type(error).__name__))
    status = getattr(error, "upstream_status" if upstream else "status", None)
    if isinstance(status, int):
        span.set_attribute("http.response.status_code", status)
    # The gateway's own message only (ProviderErrors are scrubbed), never the exception's
    # arguments, which might quote a request.
    span.set_status(Status(StatusCode.ERROR, str(failure or type(error).__name__)))


_ADDRESSES: dict[str, tuple[str, int | None]] = {}  # one per configured base URL


def _address(base_url: str | None) -> dict[str, Any]:
    """server.address / server.port of a provider's base URL (parsed once per URL)."""
    if not base_url:
        return {}
    found = _ADDRESSES.get(base_url)
    if found is None:
        from urllib.parse import urlsplit

        parts = urlsplit(base_url)
        found = _ADDRESSES[base_url] = (parts.hostname or "", parts.port)
    host, port = found
    return (
        {genai.SERVER_ADDRESS: host, genai.SERVER_PORT: port}
        if port
        else {genai.SERVER_ADDRESS: host}
    )


class OtelRequest:
    """One sampled request: its SERVER span, stage spans, and CLIENT attempt spans. The serving
    attempt's span stays open until the request ends (a stream's end), so it carries the usage
    and covers the whole upstream exchange."""

    __slots__ = (
        "_ctx",
        "_ended",
        "_late",
        "_operation",
        "_owner",
        "_serving",
        "_span",
        "_tracer",
    )

    def __init__(self, owner: OtelTracer, x: AnyExchange) -> None:
        self._owner = owner
        self._tracer = tracer = owner.tracer
        method, path = x.http.method, x.http.scope["path"]
        self._operation = x.spec.operation  # the API's own (chat, embeddings, ...)
        self._span = tracer.start_span(
            f"{method} {path}",
            context=_parent(x),
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "http.route": path,
                "url.path": path,
                genai.OPERATION: self._operation,
                "interlock.request_id": x.caller.request_id,
                "interlock.tenant": x.caller.tenant,
            },
        )
        self._ctx = trace.set_span_in_context(self._span)
        self._serving: Span | None = None
        self._ended = False
        # The server span's attributes known later, set at its end in one call (each call
        # takes the span's lock and checks every value: once is cheaper).
        self._late: dict[str, Any] = {}

    async def stage(self, stage: Stage, x: AnyExchange) -> None:
        if stage.name not in TIMED_STAGES:
            await stage(x)
            return
        span = self._tracer.start_span(
            f"interlock.{stage.name}", context=self._ctx, kind=SpanKind.INTERNAL
        )
        current = context.attach(trace.set_span_in_context(span, self._ctx))
        try:
            await stage(x)
        except BaseException as error:
            _failure(span, error)  # never the exception's text: it may quote the request
            raise
        finally:
            context.detach(current)
            span.end()

    async def attempt(self, work: Awaitable[T], target: Target, reason: str, streaming: bool) -> T:
        provider = target.provider
        attributes: dict[str, Any] = {
            genai.OPERATION: self._operation,
            genai.PROVIDER: genai.PROVIDERS.get(provider.kind, provider.kind),
            genai.REQUEST_MODEL: target.model,
            "interlock.provider": provider.name,
            "interlock.attempt.reason": reason,
            "interlock.stream": streaming,
            **_address(provider.base_url),
        }
        span = self._tracer.start_span(
            f"{self._operation} {target.model}", kind=SpanKind.CLIENT, attributes=attributes
        )
        outbound = OUTBOUND.set(_traceparent(span))
        current = context.attach(trace.set_span_in_context(span))
        try:
            result = await work
        except BaseException as error:
            _failure(span, error, upstream=True)
            span.end()
            raise
        finally:
            context.detach(current)
            OUTBOUND.reset(outbound)
        span.set_attributes(genai.response_attributes(result))
        if self._serving is not None:  # served before a budget downgrade re-ran dispatch
            self._serving.end()
        self._serving = span
        return result

    def skipped(self, target: Target, error: ProviderError) -> None:
        trace.get_current_span().add_event(
            "interlock.target_skipped",
            {
                "interlock.target": target.label,
                "interlock.skip_reason": error.code or "unavailable",
            },
        )

    def responded(self, x: AnyExchange, status: int, headers: Any, open_: bool) -> None:
        late = self._late
        late["http.response.status_code"] = status
        for name, value in headers.items():
            if name.startswith(_HEADER_PREFIX) and name not in _NOT_FROM_HEADERS:
                late[f"interlock.{name[len(_HEADER_PREFIX) :].replace('-', '_')}"] = value
        if not open_:
            self._end(x, x.usage, "ok" if status < 400 else None)

    def finished(
        self, x: AnyExchange, usage: dict[str, Any] | None, status: str, error: ProviderError | None
    ) -> None:
        if self._ended:
            return
        if error is not None and self._serving is not None:
            _failure(self._serving, error, upstream=True)
        self._end(x, usage, status)

    def failed(self, x: AnyExchange, error: BaseException, status: int | None) -> None:
        if self._ended:
            return
        _failure(self._span, error)
        if status is not None:
            self._late["http.response.status_code"] = status
        self._end(x, None, None)

    def _end(self, x: AnyExchange, usage: dict[str, Any] | None, outcome: str | None) -> None:
        self._ended = True
        span, serving, late = self._span, self._serving, self._late
        request = getattr(x, "request", None)
        if request is not None:
            late[genai.REQUEST_MODEL] = request.model
        served = getattr(x, "outcome", None)
        if served is not None:
            late["interlock.attempts"] = served.attempts
            late["interlock.failovers"] = served.failovers
            late["interlock.retries"] = served.retries
        if outcome is not None:
            late["interlock.outcome"] = outcome
        used = genai.usage_attributes(usage)
        if self._owner.capture_content:
            _content(serving or span, x)
        if serving is not None:
            serving.set_attributes(used)
            serving.end()
        span.set_attributes({**late, **used})
        span.end()


def _content(span: Span, x: AnyExchange) -> None:
    """The opt-in prompt and completion (tracing.capture_content), on the inference span."""
    messages = genai.input_messages(getattr(x, "payload", None))
    if messages is not None:
        span.set_attribute(genai.INPUT_MESSAGES, messages)
    request = getattr(x, "request", None)
    if request is not None and not getattr(request, "stream", False):
        answer = genai.output_messages(getattr(x, "result", None))
        if answer is not None:
            span.set_attribute(genai.OUTPUT_MESSAGES, answer)
