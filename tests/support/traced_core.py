"""A real core whose spans go to an in-memory exporter, readable over HTTP.

Test-only, outside the production code: it builds core.app's app with an OtelTracer whose
processor exports each span as it ends into an InMemorySpanExporter, and answers
`GET /__test/spans` (on either listener) with every finished span as JSON. The stack runs it
through the same launcher as the real core (`Stack.start(core_app=TRACED_CORE)`), so the
spans are those of real requests through the real edge.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from core.app import create_app as create_core_app
from core.observe.otel import OtelTracer
from shared.config import Config

TRACED_CORE = "tests.support.traced_core:create_app"
SPANS_PATH = "/__test/spans"


def as_json(span: ReadableSpan) -> dict[str, Any]:
    context, parent = span.get_span_context(), span.parent
    assert context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": f"{parent.span_id:016x}" if parent is not None else None,
        "attributes": dict(span.attributes or {}),
        "events": [
            {"name": event.name, "attributes": dict(event.attributes or {})}
            for event in span.events
        ],
        "status": span.status.status_code.name,
        "status_description": span.status.description,
        "schema_url": span.instrumentation_scope.schema_url if span.instrumentation_scope else None,
        "service": (span.resource.attributes or {}).get("service.name"),
    }


class SpansEndpoint:
    def __init__(self, app: ASGIApp, exporter: InMemorySpanExporter) -> None:
        self.app = app
        self.exporter = exporter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != SPANS_PATH:
            await self.app(scope, receive, send)
            return
        body = orjson.dumps([as_json(span) for span in self.exporter.get_finished_spans()])
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def create_app(config: Config) -> Starlette:
    exporter = InMemorySpanExporter()
    tracing = replace(config.tracing, enabled=True)
    tracer = OtelTracer(tracing, exporter, SimpleSpanProcessor(exporter))
    app = create_core_app(config, tracer=tracer)
    app.add_middleware(SpansEndpoint, exporter=exporter)
    return app
