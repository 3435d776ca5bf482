"""OTLP receivers on loopback, decoding what they get with the official opentelemetry-proto
messages: the HTTP/protobuf endpoint (`POST /v1/traces`, an aiohttp fake) and the gRPC
TraceService. Tests read `exports` (every ExportTraceServiceRequest, decoded) and `bodies`
(the raw bytes, to search for text that must never be exported)."""

from __future__ import annotations

import gzip
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tests.support.fake_server import FakeServer

Request = trace_service_pb2.ExportTraceServiceRequest
Response = trace_service_pb2.ExportTraceServiceResponse


class _Collected:
    def __init__(self) -> None:
        self.exports: list[Any] = []
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()

    def collect(self, body: bytes) -> None:
        with self.lock:
            self.bodies.append(body)
            self.exports.append(Request.FromString(body))

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, span) for every span received so far."""
        with self.lock:
            exports = list(self.exports)
        return [
            ({a.key: _value(a.value) for a in rs.resource.attributes}, span)
            for export in exports
            for rs in export.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def attributes(span: Any) -> dict[str, Any]:
    return {a.key: _value(a.value) for a in span.attributes}


class OtlpHttpReceiver(FakeServer, _Collected):
    def __init__(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/traces", self.traces)
        FakeServer.__init__(self, app)
        _Collected.__init__(self)

    @property
    def endpoint(self) -> str:
        return f"{self.url}/v1/traces"

    async def traces(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        assert request.headers.get("content-type") == "application/x-protobuf"
        self.collect(body)
        return web.Response(
            body=Response().SerializeToString(), content_type="application/x-protobuf"
        )


class OtlpGrpcReceiver(trace_service_pb2_grpc.TraceServiceServicer, _Collected):  # type: ignore[misc]
    def __init__(self) -> None:
        _Collected.__init__(self)
        self._server = grpc.server(ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def Export(self, request: Any, context: Any) -> Any:
        self.collect(request.SerializeToString())
        return Response()

    def start(self) -> OtlpGrpcReceiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(0)
