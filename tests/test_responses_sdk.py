"""The official OpenAI SDK's Responses API (client.responses) -> edge -> core -> providers.

Real loopback sockets: the edge and core as processes, the fake providers of tests/support
(OpenAI-compatible chat, Anthropic, Gemini), and the SDK as the client. Covers create and
stream (the SDK's `responses.stream()` helper checks the event order and ids), function tools
round trips, a failure after the first byte, a failover, and errors naming the field.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support import raw
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_anthropic import TEXT as CLAUDE_TEXT
from tests.support.fake_openai import TEXT, FakeOpenAI
from tests.support.stack import Stack

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI, claude: FakeAnthropic
) -> Iterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("responses-sdk")
    fake_provider = {"kind": "openai", "base_url": fake.base_url, "api_key": "sk-up"}
    overrides = {
        "providers": {
            "mock": {"kind": "mock", "allow_any_model": True},
            "fake": {**fake_provider, "allow_any_model": True},
            "claude": {
                "kind": "anthropic",
                "base_url": claude.url,
                "api_key": "sk-ant-up",
                "allow_any_model": True,
            },
        },
        "models": {
            "mock-1": {"provider": "mock", "model": "mock-1"},
            "gpt-fake": {"provider": "fake", "model": "gpt-fake"},
            "tools-fake": {"provider": "fake", "model": "tool-loop"},
            "cut-fake": {"provider": "fake", "model": "cut-stream"},
            "claude-tools": {"provider": "claude", "model": "tool-use"},
            "claude": {"provider": "claude", "model": "claude-x"},
            "failover": {
                "targets": [
                    {"provider": "fake", "model": "fail-500"},
                    {"provider": "claude", "model": "claude-x"},
                ]
            },
        },
    }
    running = Stack(workdir, overrides).start()
    yield running
    running.stop()


def client(stack: Stack, tenant: str = "acme") -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{stack.edge_url}/v1", api_key=stack.token(tenant=tenant), max_retries=0
    )


def post(stack: Stack, body: dict[str, Any]) -> raw.RawResponse:
    return raw.post(f"{stack.edge_url}/v1/responses", body, stack.token())


def test_create_with_string_input(stack: Stack) -> None:
    response = client(stack).responses.create(model="gpt-fake", input="Say hello")
    assert response.status == "completed"
    assert response.output_text == TEXT
    assert response.id.startswith("resp_")
    assert response.usage is not None and response.usage.input_tokens > 0


def test_stream_through_helper(stack: Stack) -> None:
    with client(stack).responses.stream(model="claude", input="Say hello") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert final.output_text == CLAUDE_TEXT
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
