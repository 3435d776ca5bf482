"""The OpenTelemetry form of the request metrics: names, units, attributes and bucket boundaries
of the GenAI semantic conventions (an in-memory reader), the same observations as the Prometheus
form, and a real core exporting OTLP/HTTP to a receiver on loopback that decodes the requests
with the official protobuf package."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from aiohttp import web
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)

from core.ledger.record import LedgerRecord
from core.observe.events import EVENTS
from core.observe.otel_metrics import OtlpMetrics
from core.observe.request_metrics import TOKEN_BOUNDS, Labels, RequestMetrics
from core.spend.usage import UsageSplit
from shared.config import Config, embedded_defaults, parse_config
from tests.support.net import free_port
from tests.support.stack import Stack

MESSAGES = [{"role": "user", "content": "hello there"}]


def record(**changes: Any) -> LedgerRecord:
    fields: dict[str, Any] = {
        "request_id": "req_1",
        "ts": time.time(),
        "tenant": "acme",
        "tags": (),
        "api": "openai",
        "requested_model": "mock-1",
        "served_model": "mock-1",
        "provider": "mock",
        "key_id": None,
        "usage": UsageSplit(input=40, cache_read=10, output=7),
        "cost_micros": 123,
        "price_version": "v",
        "unpriced": False,
        "outcome": "ok",
        "attempts": 1,
        "latency_ms": 250.0,
        "ttft_ms": 40.0,
    }
    return LedgerRecord(**{**fields, **changes})


def defaults() -> Config:
    """The embedded defaults (`make run`: the mock provider, mock-1 and mock-large)."""
    return parse_config(embedded_defaults({}), "embedded defaults", {})


class Collected(MetricExporter):
    """An exporter that keeps what it is given (the in-process end of the pipeline)."""

    def __init__(self) -> None:
        super().__init__()
        self.exports: list[MetricsData] = []

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self.exports.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


def by_name(data: MetricsData) -> dict[str, Any]:
    metrics = {}
    for resource in data.resource_metrics:
        assert resource.resource.attributes["service.name"] == "interlock-core"
        for scope in resource.scope_metrics:
            assert scope.schema_url == "https://opentelemetry.io/schemas/1.41.0"
            for metric in scope.metrics:
                metrics[metric.name] = metric
    return metrics


def test_names_units_attributes_and_buckets_follow_the_conventions() -> None:
    metrics = RequestMetrics(Labels(defaults()))
    metrics.observe(record(), "chat")
    metrics.observe(record(latency_ms=900.0, ttft_ms=80.0), "chat")
    failed = record(outcome="transient", provider=None, served_model=None, usage=UsageSplit())
    metrics.observe(failed, "chat")
    exporter = Collected()
    otlp = OtlpMetrics([*metrics.instruments.all(), *EVENTS], exporter, interval_s=60)
    asyncio.run(otlp.stop())  # one export, as on shutdown
    found = by_name(exporter.exports[-1])
    tokens = found["gen_ai.client.token.usage"]
    assert tokens.unit == "{token}"
    assert tokens.data.aggregation_temporality == AggregationTemporality.CUMULATIVE
    by_type = {p.attributes["gen_ai.token.type"]: p for p in tokens.data.data_points}
    assert by_type["input"].sum == 100 and by_type["output"].sum == 14  # cache reads count
    assert (by_type["input"].count, by_type["input"].min, by_type["input"].max) == (2, 50, 50)
    assert tuple(by_type["input"].explicit_bounds) == tuple(float(b) for b in TOKEN_BOUNDS)
    assert dict(by_type["input"].attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "mock",
        "gen_ai.request.model": "mock-1",
        "gen_ai.response.model": "mock-1",
        "gen_ai.token.type": "input",
    }
    duration = found["gen_ai.client.operation.duration"]
    assert duration.unit == "s"
    ok = [p for p in duration.data.data_points if "error.type" not in p.attributes]
    assert [(p.count, p.min, p.max) for p in ok] == [(2, 0.25, 0.9)]
    errors = [p for p in duration.data.data_points if "error.type" in p.attributes]
    assert [p.attributes["error.type"] for p in errors] == ["transient"]
    assert errors[0].attributes["gen_ai.provider.name"] == "_none"
    first = found["gen_ai.client.operation.time_to_first_chunk"].data.data_points
    assert [p.sum for p in first] == [pytest.approx(0.12)]  # the failure had no first chunk
    requests = found["interlock.requests"]
    assert requests.data.is_monotonic
    outcomes = {p.attributes["interlock.outcome"]: p.value for p in requests.data.data_points}
    assert outcomes == {"ok": 2, "transient": 1}


def test_labels_come_from_configuration_only() -> None:
    config = defaults()
    labels = Labels(config)
    assert labels.requested("mock-1") == "mock-1" and labels.requested("x" * 300) == "_other"
    assert labels.served("mock", "mock-1") == "mock-1"
    assert labels.served("mock", "tenant-typed") == "mock/*"
    assert labels.served(None, None) == "_none"
    assert labels.tenant("acme") == "_other"  # no tenant listed under metrics.tenants


class Receiver:
    """An OTLP/HTTP metrics endpoint on loopback: decodes every export request it gets."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[ExportMetricsServiceRequest] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _export(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        message = ExportMetricsServiceRequest()
        message.ParseFromString(await request.read())
        self.requests.append(message)
        return web.Response(body=b"", content_type="application/x-protobuf")

    def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/v1/metrics", self._export)
        runner = web.AppRunner(app)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(runner.setup(), self._loop).result(5)
        site = web.TCPSite(runner, "127.0.0.1", self.port)
        asyncio.run_coroutine_threadsafe(site.start(), self._loop).result(5)
        return self

    def names(self) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for request in self.requests:
            for resource in request.resource_metrics:
                for scope in resource.scope_metrics:
                    for metric in scope.metrics:
                        out.setdefault(metric.name, []).append(metric)
        return out


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    yield Receiver().start()


def test_a_core_exports_otlp_to_a_receiver(tmp_path: Any, receiver: Receiver) -> None:
    stack = Stack(tmp_path, {"metrics": {"otlp": True}})
    stack.env.update(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
            "OTEL_METRIC_EXPORT_INTERVAL": "200",
        }
    )
    stack.start()
    try:
        token = stack.token()
        sdk = openai.OpenAI(base_url=f"{stack.edge_url}/v1", api_key=token, max_retries=0)
        answer = sdk.chat.completions.create(model="mock-1", messages=MESSAGES)  # type: ignore[arg-type]
        assert answer.usage is not None
        deadline = time.monotonic() + 10
        while "gen_ai.client.token.usage" not in receiver.names():
            assert time.monotonic() < deadline, "no OTLP export arrived"
            time.sleep(0.1)
    finally:
        stack.stop()
    metric = receiver.names()["gen_ai.client.token.usage"][-1]
    assert metric.unit == "{token}"
    sums = {}
    for point in metric.histogram.data_points:
        attributes = {a.key: a.value.string_value for a in point.attributes}
        assert attributes["gen_ai.provider.name"] == "mock"
        sums[attributes["gen_ai.token.type"]] = point.sum
    assert sums == {"input": answer.usage.prompt_tokens, "output": answer.usage.completion_tokens}
    # Never any prompt text in what was exported.
    assert all(b"hello there" not in r.SerializeToString() for r in receiver.requests)
