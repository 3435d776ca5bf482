"""Spans leave a real core process over OTLP, HTTP/protobuf and gRPC, to receivers on loopback
that decode them with the official opentelemetry-proto messages (tests/support/otlp_receiver.py).
Configured the way an operator would: the `tracing:` section, or only the standard OTEL_*
variables. No prompt text is in any exported byte; a parent that says "not sampled" and a
sample_ratio of 0 export nothing, while the provider still gets the client's trace context."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.fake_openai import FakeOpenAI
from tests.support.otlp_receiver import OtlpGrpcReceiver, OtlpHttpReceiver, attributes
from tests.support.stack import Stack

Receiver = OtlpHttpReceiver | OtlpGrpcReceiver


def _stack(workdir: Path, fake: FakeOpenAI, tracing: dict[str, Any], env: dict[str, str]) -> Stack:
    overrides: dict[str, Any] = {
        "providers": {
            "fake": {"kind": "openai", "base_url": fake.base_url, "api_key": "sk-test"},
        },
        "models": {"gpt-fake": {"provider": "fake", "model": "gpt-fake"}},
    }
    if tracing:
        overrides["tracing"] = tracing
    stack = Stack(workdir, overrides)
    # Spans are exported within 100 ms, and never through a proxy the host may set.
    stack.env.update({"OTEL_BSP_SCHEDULE_DELAY": "100", "NO_PROXY": "*", "no_proxy": "*"}, **env)
    return stack.start()


@pytest.fixture(scope="module")
def http_receiver() -> Iterator[OtlpHttpReceiver]:
    receiver = OtlpHttpReceiver().start()
    yield receiver  # type: ignore[misc]
    receiver.stop()


@pytest.fixture(scope="module")
def grpc_receiver() -> Iterator[OtlpGrpcReceiver]:
    receiver = OtlpGrpcReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def http_stack(
    tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI, http_receiver: OtlpHttpReceiver
) -> Iterator[Stack]:
    """Configured in interlock.yaml."""
    tracing = {"enabled": True, "protocol": "http/protobuf", "endpoint": http_receiver.endpoint}
    stack = _stack(tmp_path_factory.mktemp("otlp-http"), fake, tracing, {})
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def grpc_stack(
    tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI, grpc_receiver: OtlpGrpcReceiver
) -> Iterator[Stack]:
    """Configured by the standard variables only (no `tracing:` section)."""
    env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_ENDPOINT": grpc_receiver.endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_SERVICE_NAME": "gateway-under-test",
    }
    stack = _stack(tmp_path_factory.mktemp("otlp-grpc"), fake, {}, env)
    yield stack
    stack.stop()


def _chat(stack: Stack, content: str, flags: str = "01", stream: bool = False) -> str:
    """One chat through the edge with a client traceparent; its trace id."""
    trace_id = uuid.uuid4().hex
    client = openai.OpenAI(
        base_url=f"{stack.edge_url}/v1",
        api_key=stack.token(),
        max_retries=0,
        default_headers={"traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-{flags}"},
    )
    answer = client.chat.completions.create(
        model="gpt-fake", messages=[{"role": "user", "content": content}], stream=stream
    )
    if stream:
        list(answer)  # type: ignore[arg-type]
    return trace_id


def _received(receiver: Receiver, trace_id: str) -> list[tuple[dict[str, Any], Any]]:
    """The trace's spans, once its server span has arrived."""
    deadline = time.monotonic() + 15
    while True:
        spans = [(r, s) for r, s in receiver.spans() if s.trace_id.hex() == trace_id]
        if any(s.kind == s.SPAN_KIND_SERVER for _, s in spans):
            return spans
        if time.monotonic() > deadline:
            raise AssertionError(f"no spans of {trace_id} reached the receiver")
        time.sleep(0.05)


def _check_tree(spans: list[tuple[dict[str, Any], Any]], service: str) -> None:
    by_name = {s.name: s for _, s in spans}
    assert set(by_name) == {
        "POST /v1/chat/completions",
        "interlock.admit",
        "interlock.dispatch",
        "chat gpt-fake",
    }
    server, dispatch = by_name["POST /v1/chat/completions"], by_name["interlock.dispatch"]
    client = by_name["chat gpt-fake"]
    assert server.kind == server.SPAN_KIND_SERVER
    assert client.kind == client.SPAN_KIND_CLIENT
    assert dispatch.parent_span_id == server.span_id
    assert client.parent_span_id == dispatch.span_id
    assert {resource["service.name"] for resource, _ in spans} == {service}
    client_attributes = attributes(client)
    assert client_attributes["gen_ai.operation.name"] == "chat"
    assert client_attributes["gen_ai.provider.name"] == "openai"
    assert client_attributes["gen_ai.usage.output_tokens"] > 0


@pytest.mark.parametrize("stream", [False, True])
def test_http_protobuf(http_stack: Stack, http_receiver: OtlpHttpReceiver, stream: bool) -> None:
    marker = f"PROMPT-{uuid.uuid4().hex}"
    trace_id = _chat(http_stack, f"tell nobody: {marker}", stream=stream)
    _check_tree(_received(http_receiver, trace_id), "interlock-core")
    assert not [body for body in http_receiver.bodies if marker.encode() in body]


def test_grpc_from_the_standard_variables(
    grpc_stack: Stack, grpc_receiver: OtlpGrpcReceiver
) -> None:
    marker = f"PROMPT-{uuid.uuid4().hex}"
    trace_id = _chat(grpc_stack, f"tell nobody: {marker}", stream=True)
    _check_tree(_received(grpc_receiver, trace_id), "gateway-under-test")
    assert not [body for body in grpc_receiver.bodies if marker.encode() in body]


def _upstream_traceparent(fake: FakeOpenAI, trace_id: str) -> str:
    found = [
        value
        for r in fake.received
        for key, value in r.headers.items()
        if key.lower() == "traceparent" and trace_id in value
    ]
    assert len(found) == 1, found
    return found[0]


def test_an_unsampled_parent_exports_nothing(
    http_stack: Stack, http_receiver: OtlpHttpReceiver, fake: FakeOpenAI
) -> None:
    unsampled = _chat(http_stack, "hi", flags="00")
    sampled = _chat(http_stack, "hi")
    _received(http_receiver, sampled)  # exported after the unsampled one would have been
    assert not [s for _, s in http_receiver.spans() if s.trace_id.hex() == unsampled]
    # Not traced, the request still carries the trace context on to the provider.
    assert _upstream_traceparent(fake, unsampled).endswith("-00")


def test_sample_ratio_zero_exports_nothing(
    tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI
) -> None:
    receiver = OtlpHttpReceiver().start()
    tracing = {"enabled": True, "sample_ratio": 0, "endpoint": receiver.endpoint}
    stack = _stack(tmp_path_factory.mktemp("otlp-zero"), fake, tracing, {})
    try:
        trace_ids = [_chat(stack, "hi") for _ in range(5)]
        stack.stop()  # the core's shutdown flushes whatever it buffered
        assert receiver.bodies == []
        assert all(_upstream_traceparent(fake, t).startswith(f"00-{t}-") for t in trace_ids)
    finally:
        stack.stop()
        receiver.stop()
