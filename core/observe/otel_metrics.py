"""The OpenTelemetry form of the per-request metrics, exported with OTLP when `metrics.otlp` is
on (off by default: its instruments cost several microseconds per request, so nothing is built
or recorded when it is off).

The same observations as the Prometheus form (core.observe.request_metrics), under the GenAI
semantic conventions' own names and units (v1.41.0: `gen_ai.client.token.usage` {token},
`gen_ai.client.operation.duration` s, `gen_ai.client.operation.time_to_first_chunk` s, with
the conventions' bucket boundaries), the gateway's under `interlock.*`. The exporter is the
OTLP one the standard `OTEL_EXPORTER_OTLP_*` variables configure (endpoint, headers, protocol:
`http/protobuf`, the default, or `grpc`), exporting every `OTEL_METRIC_EXPORT_INTERVAL` ms.
"""

from __future__ import annotations

import os

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader as Periodic
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from core.observe.request_metrics import SECONDS_BOUNDS, TOKEN_BOUNDS, Observed

SCHEMA = "https://opentelemetry.io/schemas/1.41.0"
TOKENS = "gen_ai.client.token.usage"
DURATION = "gen_ai.client.operation.duration"
FIRST_CHUNK = "gen_ai.client.operation.time_to_first_chunk"


def otlp_exporter() -> MetricExporter:
    """OTLP over HTTP/protobuf, or gRPC when OTEL_EXPORTER_OTLP(_METRICS)_PROTOCOL says so."""
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
        os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
    )
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpExporter,
    )

    return HttpExporter()


def _buckets(name: str, bounds: tuple[float, ...]) -> View:
    """The conventions' bucket boundaries for histogram `name`."""
    return View(instrument_name=name, aggregation=ExplicitBucketHistogramAggregation(bounds))


class OtelRequests:
    """A sink of request observations into OpenTelemetry instruments read by `reader`."""

    def __init__(self, reader: MetricReader | None = None) -> None:
        self.provider = MeterProvider(
            metric_readers=[reader or Periodic(otlp_exporter())],
            resource=Resource.create({"service.name": "interlock-core"}),
            views=[
                _buckets(TOKENS, TOKEN_BOUNDS),
                _buckets(DURATION, SECONDS_BOUNDS),
                _buckets(FIRST_CHUNK, SECONDS_BOUNDS),
            ],
        )
        meter = self.provider.get_meter("interlock", schema_url=SCHEMA)
        self._tokens = meter.create_histogram(TOKENS, "{token}", "Input and output tokens used.")
        self._duration = meter.create_histogram(DURATION, "s", "GenAI operation duration.")
        self._first_chunk = meter.create_histogram(FIRST_CHUNK, "s", "Time to the first chunk.")
        self._requests = meter.create_counter("interlock.requests", "{request}", "Requests.")
        self._spend = meter.create_counter("interlock.spend", "{microdollar}", "Spend.")

    def record(self, o: Observed) -> None:
        attributes = {
            "gen_ai.operation.name": o.operation,
            "gen_ai.provider.name": o.provider,
            "gen_ai.request.model": o.requested,
            "gen_ai.response.model": o.served,
        }
        if o.failed:
            self._duration.record(o.duration_s, {**attributes, "error.type": o.outcome})
        else:
            self._duration.record(o.duration_s, attributes)
        if o.first_chunk_s is not None:
            self._first_chunk.record(o.first_chunk_s, attributes)
        if o.input_tokens or o.output_tokens:
            self._tokens.record(o.input_tokens, {**attributes, "gen_ai.token.type": "input"})
            if o.output_tokens is not None:
                output = {**attributes, "gen_ai.token.type": "output"}
                self._tokens.record(o.output_tokens, output)
        self._requests.add(
            1,
            {"interlock.api": o.api, "interlock.outcome": o.outcome, "interlock.tenant": o.tenant},
        )
        if o.cost_micros:
            spend = {**attributes, "interlock.tenant": o.tenant}
            self._spend.add(o.cost_micros, spend)

    def shutdown(self) -> None:
        """Exports what is left (on the core's stop)."""
        self.provider.shutdown()
