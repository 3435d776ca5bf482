"""One transport, three APIs (core.providers.transport through the real edge and core): chat,
embeddings and the Anthropic passthrough reach the same provider failures through the same
transport, so a client sees the same status and words, and failover treats them alike, whichever
API it
called; and a relayed (passthrough) stream that stalls ends at the idle timeout, as chat's do."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from core.wire.sse import SSEDecoder
from tests.support import raw
from tests.support.fake_stall import FakeStall
from tests.support.net import free_port
from tests.support.stack import Stack

REFUSED = "could not connect to the upstream provider"
FIRST_BYTE_TIMED_OUT = "the upstream provider sent nothing before the first-byte timeout"
COMPLETION_TIMED_OUT = "the upstream provider did not answer within the completion timeout"
TEXT = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def stall() -> Iterator[FakeStall]:
    server = FakeStall().start()
    yield server
    server.stop()


# Per API: the upstream model, and the mock model a fallback route ends with.
APIS = {"chat": ("gpt-x", "mock-1"), "embed": ("text-embedding-3-small", "mock-embed")}
APIS["claude"] = ("claude-x", "mock-1")


def routes(kind: str) -> dict[str, Any]:
    """`<api>-<kind>` (the failing provider alone) and `<api>-<kind>-fallback` (then the mock);
    chat and embeddings share the OpenAI-kind provider, messages passes through to Anthropic."""
    found: dict[str, Any] = {}
    for api, (model, spare) in APIS.items():
        provider = f"{kind}-claude" if api == "claude" else f"{kind}-oai"
        failing = {"provider": provider, "model": model}
        found[f"{api}-{kind}"] = failing
        found[f"{api}-{kind}-fallback"] = {
            "targets": [failing, {"provider": "mock", "model": spare}]
        }
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, stall: FakeStall) -> Iterator[Stack]:
    closed = f"http://127.0.0.1:{free_port()}"
    overrides = {
        # Short idle timeout: the stall tests end well before the fake's 5 s of silence.
        "core": {"resilience": {"max_retries": 0, "stream_idle_timeout": "1s"}},
        "providers": {
            "mock": {"kind": "mock"},
            "refused-oai": {"kind": "openai", "base_url": f"{closed}/v1", "api_key": "sk-r"},
            "refused-claude": {"kind": "anthropic", "base_url": closed, "api_key": "sk-ant-r"},
            "slow-oai": {
                "kind": "openai",
                "base_url": f"{stall.url}/v1",
                "api_key": "sk-s",
                "timeout": "1s",
            },
            "stall-claude": {
                "kind": "anthropic",
                "base_url": stall.url,
                "api_key": "sk-ant-s",
                "allow_any_model": True,
            },
            "slow-claude": {
                "kind": "anthropic",
                "base_url": stall.url,
                "api_key": "sk-ant-s",
                "timeout": "1s",
            },
        },
        "models": {
            "mock-1": {"provider": "mock", "model": "mock-1"},
            "mock-embed": {"provider": "mock", "model": "mock-embed"},
            **routes("refused"),
            **routes("slow"),
            "stall-first-event-fallback": {
                "targets": [
                    {"provider": "stall-claude", "model": "stall-first-event"},
                    {"provider": "mock", "model": "mock-1"},
                ]
            },
        },
    }
    running = Stack(tmp_path_factory.mktemp("transport-e2e"), overrides).start()
    yield running
    running.stop()


def call(stack: Stack, api: str, model: str, stream: bool) -> raw.RawResponse:
    token = stack.token()
    if api == "embed":
        return raw.post(f"{stack.edge_url}/v1/embeddings", {"model": model, "input": "hi"}, token)
    if api == "chat":
        body = {"model": model, "messages": TEXT, "stream": stream}
        return raw.post(f"{stack.edge_url}/v1/chat/completions", body, token)
    body = {"model": model, "max_tokens": 5, "messages": TEXT, "stream": stream}
    headers = {"x-api-key": token, "anthropic-version": "2023-06-01"}
    return raw.post(f"{stack.edge_url}/v1/messages", body, headers=headers)


CASES = [("chat", False), ("chat", True), ("embed", False), ("claude", False), ("claude", True)]


@pytest.mark.parametrize(("kind", "status"), [("refused", 502), ("slow", 504)])
@pytest.mark.parametrize(("api", "stream"), CASES)
def test_every_api_maps_a_transport_failure_alike(
    stack: Stack, api: str, stream: bool, kind: str, status: int
) -> None:
    """A slow provider is ended by the dispatcher's clock for its kind (capped at the provider's
    total timeout): first byte for streams, completion otherwise, the same words on every API."""
    response = call(stack, api, f"{api}-{kind}", stream)
    assert response.status == status
    error = response.json()["error"]
    timed_out = FIRST_BYTE_TIMED_OUT if stream else COMPLETION_TIMED_OUT
    assert error["message"] == (REFUSED if kind == "refused" else timed_out)
    if api == "claude":  # the Anthropic envelope, from the passthrough
        assert response.json()["type"] == "error" and error["type"] == "api_error"
    assert response.headers["x-interlock-attempts"] == "1"


@pytest.mark.parametrize("kind", ["refused", "slow"])
@pytest.mark.parametrize(("api", "stream"), CASES)
def test_every_api_fails_over_from_a_transport_failure(
    stack: Stack, api: str, stream: bool, kind: str
) -> None:
    response = call(stack, api, f"{api}-{kind}-fallback", stream)
    assert response.status == 200, response.body[:300]
    assert response.headers["x-interlock-provider"] == "mock"
    assert response.headers["x-interlock-attempts"] == "2"
    if not stream:
        assert orjson.loads(response.body)


def events(body: bytes) -> list[tuple[str | None, Any]]:
    decoder = SSEDecoder()
    return [(e.event, orjson.loads(e.data)) for e in decoder.feed(body) + decoder.finish()]


def usage_line(stack: Stack, request_id: str) -> dict[str, Any]:
    """The core's accounting line for a request (a stream's is written as it ends)."""
    logs = stack.wait_for_log("interlock.usage", request_id)
    line = next(
        line for line in logs.splitlines() if "interlock.usage" in line and request_id in line
    )
    return orjson.loads(line[line.index("{") :])  # type: ignore[no-any-return]


def test_a_stalled_passthrough_stream_ends_with_an_idle_timeout_error_event(stack: Stack) -> None:
    started = time.monotonic()
    response = call(stack, "claude", "stall-claude/stall-midstream", True)
    elapsed = time.monotonic() - started
    assert response.status == 200
    relayed = events(response.body)
    names = [name for name, _ in relayed]
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta", "error"]
    assert relayed[-1][1] == {
        "type": "error",
        "error": {"type": "api_error", "message": "the upstream stream stalled (idle timeout)"},
    }
    assert elapsed < 4  # the idle timeout (1 s) ended it, not the end of the upstream's silence
    line = usage_line(stack, response.headers["x-request-id"])
    assert line["outcome"] == "cut:timeout" and line["provider"] == "stall-claude"


def test_a_passthrough_stream_silent_before_its_first_event_fails_over_at_the_idle_timeout(
    stack: Stack,
) -> None:
    started = time.monotonic()
    response = call(stack, "claude", "stall-first-event-fallback", True)
    assert response.status == 200
    assert response.headers["x-interlock-attempts"] == "2"
    assert response.headers["x-interlock-provider"] == "mock"
    assert events(response.body)[-1][0] == "message_stop"
    assert time.monotonic() - started < 4
