"""One transport, three APIs (core.transport through the real edge and core): chat, embeddings
and the Anthropic passthrough reach the same provider failures through the same transport, so
a client sees the same status and words, and failover treats them alike, whichever API it
called. The idle timeout of relayed streams is in test_messages_passthrough.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tests.support import raw
from tests.support.fake_stall import FakeStall
from tests.support.net import free_port
from tests.support.stack import Stack

REFUSED = "could not connect to the upstream provider"
TIMED_OUT = "upstream provider timed out"
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
        "core": {"resilience": {"max_retries": 0}},
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


@pytest.mark.parametrize(
    ("kind", "status", "message"), [("refused", 502, REFUSED), ("slow", 504, TIMED_OUT)]
)
@pytest.mark.parametrize(("api", "stream"), CASES)
def test_every_api_maps_a_transport_failure_alike(
    stack: Stack, api: str, stream: bool, kind: str, status: int, message: str
) -> None:
    response = call(stack, api, f"{api}-{kind}", stream)
    assert response.status == status
    error = response.json()["error"]
    assert error["message"] == message
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
