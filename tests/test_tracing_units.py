"""The tracing seam's parts on their own: the `tracing:` section and the OTEL_* variables, the
start-up choice (tracing off never imports the SDK), the sampling decision, the trace id on
log lines, the received traceparent, and the GenAI attributes."""

from __future__ import annotations

import contextvars
import io
import logging
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from core.observe import context as requestctx
from core.observe import genai
from core.observe.tracing import NO_TRACER, build_tracer
from shared import traceparent
from shared.config import parse_config
from shared.config_tracing import TracingConfig, parse_tracing
from shared.configparse import ConfigError
from shared.logs import JsonFormatter

ROOT = Path(__file__).resolve().parents[1]


def test_off_by_default() -> None:
    assert parse_tracing(None, {}) == TracingConfig()
    assert not TracingConfig().enabled and not TracingConfig().capture_content
    raw = {"providers": {"m": {"kind": "mock"}}}
    assert parse_config(raw, "test", {}).tracing == TracingConfig()
    traced = parse_config({**raw, "tracing": {"enabled": True}}, "test", {}).tracing
    assert traced.enabled


def test_the_standard_variables() -> None:
    env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "OTEL_SERVICE_NAME": "gw",
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true",
    }
    assert parse_tracing(None, env) == TracingConfig(
        enabled=True, protocol="grpc", sample_ratio=0.25, service_name="gw", capture_content=True
    )
    assert not parse_tracing(None, {**env, "OTEL_SDK_DISABLED": "true"}).enabled
    assert not parse_tracing(None, {"OTEL_TRACES_EXPORTER": "none"}).enabled
    # A signal-specific protocol wins over the general one.
    specific = {**env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}
    assert parse_tracing(None, specific).protocol == "http/protobuf"


def test_the_file_wins_over_the_variables() -> None:
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER_ARG": "0.5"}
    raw = {"enabled": False, "sample_ratio": 1, "endpoint": "http://collector:4318/v1/traces"}
    parsed = parse_tracing(raw, env)
    assert not parsed.enabled
    assert parsed.sample_ratio == 1.0
    assert parsed.endpoint == "http://collector:4318/v1/traces"


@pytest.mark.parametrize(
    ("raw", "env", "key"),
    [
        ({"protocol": "thrift"}, {}, "tracing.protocol"),
        ({"sample_ratio": 1.5}, {}, "tracing.sample_ratio"),
        ({"sample_ratio": True}, {}, "tracing.sample_ratio"),
        (None, {"OTEL_TRACES_SAMPLER_ARG": "most"}, "tracing.sample_ratio"),
        ({"endpoint": "collector:4317"}, {}, "tracing.endpoint"),
        ({"headers": {"a": "b"}}, {}, "tracing"),  # secrets stay in the exporter's variables
    ],
)
def test_bad_settings_name_their_key(raw: object, env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{key}"):
        parse_tracing(raw, env)


def test_start_up_choice() -> None:
    assert build_tracer(TracingConfig()) is NO_TRACER
    assert build_tracer(TracingConfig(enabled=True, sample_ratio=0)) is NO_TRACER
    tracer = build_tracer(TracingConfig(enabled=True, endpoint="http://127.0.0.1:9/v1/traces"))
    assert tracer is not NO_TRACER
    assert NO_TRACER.wrap("image_fetch", test_start_up_choice) is test_start_up_choice


def _sdk_modules_after_start_up(tracing: dict[str, object]) -> list[str]:
    """The tracing SDK's and exporters' modules loaded once a core app is built (the
    OpenTelemetry API alone is loaded anyway: redis-py imports it for its own hooks)."""
    body = (
        "import sys\n"
        "from shared.config import parse_config\n"
        "from core.app import create_app\n"
        "raw = {'providers': {'m': {'kind': 'mock'}}, 'hop': {'secret': 's' * 40}}\n"
        f"create_app(parse_config({{**raw, 'tracing': {tracing!r}}}, 'test', {{}}))\n"
        "prefixes = ('opentelemetry.sdk.trace', 'opentelemetry.exporter.otlp.proto.http.trace')\n"
        "loaded = [m for m in sys.modules if m.startswith(prefixes) or m == 'core.observe.otel']\n"
        "print(','.join(sorted(loaded)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", body], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [m for m in result.stdout.strip().split(",") if m]


def test_a_core_without_tracing_never_imports_the_sdk() -> None:
    """Off costs nothing: no span machinery exists, not even its modules."""
    assert _sdk_modules_after_start_up({}) == []
    assert _sdk_modules_after_start_up({"enabled": True, "sample_ratio": 0}) == []
    on = _sdk_modules_after_start_up({"enabled": True, "endpoint": "http://127.0.0.1:9/v1/t"})
    assert "opentelemetry.sdk.trace" in on
    assert "opentelemetry.exporter.otlp.proto.http.trace_exporter" in on


def _traceparent(trace_id: int, flags: str = "01") -> str:
    return f"00-{trace_id:032x}-{'1' * 16}-{flags}"


def test_sampling_is_parent_based_and_decided_by_the_trace_id() -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from core.observe.otel import OtelTracer

    half = OtelTracer(TracingConfig(enabled=True, sample_ratio=0.5), InMemorySpanExporter())
    low, high = (1 << 64) | 1, (1 << 64) | ((1 << 64) - 1)  # the low 64 bits decide
    assert half.sampled(_traceparent(low))
    assert not half.sampled(_traceparent(high))
    assert not half.sampled(_traceparent(low, flags="00"))  # the parent said no
    full = OtelTracer(TracingConfig(enabled=True), InMemorySpanExporter())
    assert full.sampled(_traceparent(high))
    assert not full.sampled(_traceparent(high, flags="02"))  # sampled is the flags' low bit


def test_received_traceparent() -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    incoming = f"00-{trace_id.upper()}-00f067aa0ba902b7-01"
    assert traceparent.received(incoming) == f"00-{trace_id}-00f067aa0ba902b7-01"
    assert traceparent.trace_id_of(traceparent.received(incoming)) == trace_id
    # The edge forwards a valid one as it came (it records no span to be the core's parent).
    assert traceparent.forwarded(incoming) == traceparent.received(incoming)
    for bad in (None, "", "garbage", f"00-{'0' * 32}-00f067aa0ba902b7-01", f"01-{trace_id}-x-01"):
        assert traceparent.forwarded(bad) is None
        fresh = traceparent.received(bad)
        assert traceparent.parse(fresh) is not None
        assert traceparent.trace_id_of(fresh) != trace_id


def test_log_lines_carry_the_request_and_trace_ids() -> None:
    """Run in a context of its own: no request bound before, nothing left bound after."""
    contextvars.Context().run(_log_lines)


def _log_lines() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("interlock.test_tracing_units")
    logger.addHandler(handler)
    try:
        requestctx.install_log_ids(logger)
        requestctx.install_log_ids(logger)  # once, however often the core starts
        assert handler.filters.count(requestctx._FILTER) == 1
        logger.warning("before any request: %s", "plain")
        requestctx.bind("acme", "req_100%s", "ab" * 16)  # a `%` in an id is not a format
        logger.warning("failover from %s: %s", "fake/x", "transient")
    finally:
        logger.removeHandler(handler)
    before, during = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert "request_id" not in before and "trace_id" not in before
    assert during["msg"] == "failover from fake/x: transient"
    assert (during["request_id"], during["trace_id"]) == ("req_100%s", "ab" * 16)


def test_genai_attributes_never_read_content() -> None:
    answer = {
        "id": "chatcmpl-1",
        "model": "gpt-x",
        "choices": [{"message": {"content": "SECRET"}, "finish_reason": "stop"}],
    }
    assert genai.response_attributes(answer) == {
        genai.RESPONSE_MODEL: "gpt-x",
        genai.RESPONSE_ID: "chatcmpl-1",
        genai.FINISH_REASONS: ["stop"],
    }
    usage = {"prompt_tokens": 12, "completion_tokens": 7, "prompt_tokens_details": {}}
    assert genai.usage_attributes(usage)[genai.INPUT_TOKENS] == 12
    anthropic = {"input_tokens": 5, "cache_read_input_tokens": 3, "output_tokens": 4}
    assert genai.usage_attributes(anthropic) == {genai.INPUT_TOKENS: 8, genai.OUTPUT_TOKENS: 4}
    assert genai.output_messages(answer) is not None  # only ever called when opted in
    assert "SECRET" not in str(genai.response_attributes(answer))
