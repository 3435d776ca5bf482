"""POST /v1/responses/input_tokens: the official OpenAI SDK (`responses.input_tokens.count`) ->
edge -> core -> a target that counts, over real loopback sockets.

OpenAI itself is sent the client's request (history inlined, model rewritten) at its own
`/responses/input_tokens`; Anthropic counts the canonical translation; the mock counts as its
usage reports; answers are OpenAI's `response.input_tokens` whoever counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest

from tests.support import raw
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_anthropic_count import fake_count
from tests.support.fake_azure import FakeAzure
from tests.support.fake_openai import FakeOpenAI
from tests.support.fake_openai_responses import counted
from tests.support.stack import Stack

INSTRUCTIONS = "Answer in one sentence."
TOOLS: list[Any] = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    fake: FakeOpenAI,
    claude: FakeAnthropic,
    azure: FakeAzure,
) -> Iterator[Stack]:
    native = {"kind": "openai", "base_url": fake.base_url, "api_key": "sk-up"}
    overrides: dict[str, Any] = {
        "providers": {
            "native": {**native, "options": {"preset": "openai"}},
            "claude": {"kind": "anthropic", "base_url": claude.url, "api_key": "sk-ant-up"},
            "mock": {"kind": "mock"},
            "azure": {"kind": "azure", "base_url": azure.url, "api_key": azure.api_key},
        },
        "models": {
            "gpt-native": {"provider": "native", "model": "gpt-5-native"},
            "claude": {"provider": "claude", "model": "claude-x"},
            "mock-1": {"provider": "mock", "model": "mock-1"},
            "azure-then-claude": {
                "targets": [
                    {"provider": "azure", "model": "gpt-deployment"},
                    {"provider": "claude", "model": "claude-x"},
                ]
            },
        },
    }
    running = Stack(tmp_path_factory.mktemp("input-tokens"), overrides).start()
    yield running
    running.stop()


def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.edge_url}/v1", api_key=stack.token(), max_retries=0)


def counts_sent(fake: FakeOpenAI) -> list[Any]:
    return [r for r in fake.received if r.path == "/v1/responses/input_tokens"]


def test_openai_counts_the_clients_own_request(stack: Stack, fake: FakeOpenAI) -> None:
    fake.reset()
    response = client(stack).responses.input_tokens.with_raw_response.count(
        model="gpt-native",
        input="What is the weather in Paris?",
        instructions=INSTRUCTIONS,
        tools=TOOLS,
    )
    [sent] = counts_sent(fake)
    assert sent.json["model"] == "gpt-5-native"
    assert (sent.json["instructions"], sent.json["tools"]) == (INSTRUCTIONS, TOOLS)
    assert sent.headers["Authorization"] == "Bearer sk-up"
    answer = response.parse()
    assert (answer.object, answer.input_tokens) == ("response.input_tokens", counted(sent.json))
    assert response.headers["x-interlock-provider"] == "native"


def test_a_previous_response_is_inlined_for_openai(stack: Stack, fake: FakeOpenAI) -> None:
    sdk = client(stack)
    first = sdk.responses.create(model="gpt-native", input="Remember the word teal.")
    fake.reset()
    sdk.responses.input_tokens.count(
        model="gpt-native", input="Which word?", previous_response_id=first.id
    )
    [sent] = counts_sent(fake)
    assert "previous_response_id" not in sent.json
    texts = orjson.dumps(sent.json["input"]).decode()
    assert "Remember the word teal." in texts and "Which word?" in texts


def test_anthropic_counts_the_translation_and_answers_in_openais_format(
    stack: Stack, claude: FakeAnthropic
) -> None:
    claude.reset()
    answer = client(stack).responses.input_tokens.count(
        model="claude", input="Weather in Paris?", instructions=INSTRUCTIONS, tools=TOOLS
    )
    [sent] = [r for r in claude.received if r.path == "/v1/messages/count_tokens"]
    assert sent.json["model"] == "claude-x" and sent.json["system"] == INSTRUCTIONS
    assert sent.json["tools"][0]["name"] == "get_weather"
    assert "max_tokens" not in sent.json
    assert (answer.object, answer.input_tokens) == ("response.input_tokens", fake_count(sent.json))


def test_the_mock_counts_what_its_usage_reports(stack: Stack) -> None:
    sdk = client(stack)
    count = sdk.responses.input_tokens.count(model="mock-1", input="Hello there")
    created = sdk.responses.create(model="mock-1", input="Hello there")
    assert created.usage is not None
    assert count.input_tokens == created.usage.input_tokens > 0


def test_an_openai_only_tool_is_counted_by_openai_alone(stack: Stack) -> None:
    web_search: list[Any] = [{"type": "web_search"}]
    sdk = client(stack)
    assert sdk.responses.input_tokens.count(model="gpt-native", input="Hi", tools=web_search)
    with pytest.raises(openai.BadRequestError) as info:
        sdk.responses.input_tokens.count(model="claude", input="Hi", tools=web_search)
    assert info.value.status_code == 400


def test_errors_are_openai_envelopes_naming_the_field(stack: Stack) -> None:
    url = f"{stack.edge_url}/v1/responses/input_tokens"
    no_model = raw.post(url, {"input": "Hi"}, token=stack.token())
    assert no_model.status == 400 and no_model.json()["error"]["param"] == "model"
    unknown = raw.post(
        url,
        {"model": "gpt-native", "input": "Hi", "previous_response_id": "resp_nope"},
        token=stack.token(),
    )
    assert unknown.status == 404
    assert unknown.json()["error"]["param"] == "previous_response_id"


def test_azure_has_no_count_and_is_passed_over(
    stack: Stack, azure: FakeAzure, claude: FakeAnthropic
) -> None:
    azure.reset()
    claude.reset()
    response = client(stack).responses.input_tokens.with_raw_response.count(
        model="azure-then-claude", input="Hi"
    )
    assert response.headers["x-interlock-provider"] == "claude"
    assert azure.received == [] and len(claude.received) == 1
