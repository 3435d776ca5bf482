"""CPU per request that tracing adds, measured inside one process: the real core app (mock
provider, no ledger) called as an ASGI app, sequentially, with no sockets in the way, so the
difference between the variants is the tracing and nothing else.

    .venv/bin/python -m tests.bench.tracing_inproc [--requests 3000] [--rounds 5]

Variants: off (NO_TRACER), on but the request not sampled (sample_ratio 1e-9), and on at 100%
with every span encoded as OTLP protobuf by the exporter's own encoder (in the batch
processor's thread, whose CPU counts too: process_time is the whole process's). Rounds
alternate the variants; the median per variant is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from starlette.applications import Starlette

from core.app import create_app
from core.observe.otel import OtelTracer
from core.observe.tracing import NO_TRACER, Tracer
from shared.config import parse_config
from shared.config_tracing import TracingConfig
from tests.support.hop_client import signed

SECRET = "s" * 40
CONFIG = {
    "providers": {"m": {"kind": "mock"}},
    "models": {"mock-1": {"provider": "m", "model": "mock-1"}},
    "hop": {"secret": SECRET},
    "ledger": {"enabled": False},
}
BODY = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


class EncodingExporter(SpanExporter):
    """What the OTLP exporters do before the network: the protobuf encoding."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        encode_spans(spans).SerializeToString()
        return SpanExportResult.SUCCESS


def _scope(data: bytes) -> dict[str, Any]:
    hop, _ = signed(SECRET, data)
    traceparent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
        (b"traceparent", traceparent.encode()),
        *((k.encode(), v.encode()) for k, v in hop.items()),
    ]
    path = "/v1/chat/completions"
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "server": ("127.0.0.1", 8001),
        "client": ("127.0.0.1", 5555),
        "root_path": "",
    }


async def _one(app: Starlette, data: bytes) -> None:
    received = False
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": data, "more_body": False}
        await asyncio.sleep(3600)  # the client never leaves
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(_scope(data), receive, send)
    assert statuses == [200], statuses


async def _measure(tracer: Tracer, requests: int) -> float:
    """CPU microseconds per request after a warm-up."""
    app = create_app(parse_config(CONFIG, "bench", {}), tracer=tracer)
    data = orjson.dumps(BODY)
    async with app.state.core.lifespan(app):
        for _ in range(300):
            await _one(app, data)
        gc.collect()
        started = time.process_time()
        for _ in range(requests):
            await _one(app, data)
        spent = time.process_time() - started
    return spent / requests * 1e6


VARIANTS: dict[str, Callable[[], Tracer]] = {
    "off": lambda: NO_TRACER,
    "unsampled": lambda: OtelTracer(
        TracingConfig(enabled=True, sample_ratio=1e-9), EncodingExporter()
    ),
    "on-100%": lambda: OtelTracer(TracingConfig(enabled=True), EncodingExporter()),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for name, make in VARIANTS.items():
            tracer = make()
            results.setdefault(name, []).append(asyncio.run(_measure(tracer, args.requests)))
            asyncio.run(tracer.shutdown())
    off = statistics.median(results["off"])
    for name, values in results.items():
        median = statistics.median(values)
        rounds = ", ".join(f"{v:.0f}" for v in values)
        print(f"{name:>10}: median {median:.0f} us CPU/request ({median - off:+.0f}) [{rounds}]")


if __name__ == "__main__":
    main()
