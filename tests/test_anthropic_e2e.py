"""The official OpenAI SDK -> edge -> core -> anthropic adapter -> fake Anthropic, over loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support import raw
from tests.support.fake_anthropic import (
    CACHE_CREATION,
    CACHE_READ,
    INPUT_TOKENS,
    TEXT,
    THINKING,
    TOOL_TEXT,
    TOOL_USES,
    FakeAnthropic,
)
from tests.support.sdk import async_client, client
from tests.support.stack import Stack

UPSTREAM_KEY = "sk-ant-upstream-test"
HELLO = [{"role": "user", "content": "Say hello"}]
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_stock_price",
            "parameters": {"type": "object", "properties": {"ticker": {"type": "string"}}},
        },
    },
]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, fake: FakeAnthropic) -> Iterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("anthropic-stack")
    overrides: dict[str, Any] = {
        "providers": {
            "claude": {
                "kind": "anthropic",
                "base_url": fake.url,
                "api_key": UPSTREAM_KEY,
                "allow_any_model": True,
            }
        },
        "models": {
            "claude-fake": {"provider": "claude", "model": "claude-fake"},
            "claude-lenient": {"provider": "claude", "model": "claude-fake", "params": "lenient"},
            "claude-resilient": {
                "targets": [
                    {"provider": "claude", "model": "overloaded"},
                    {"provider": "claude", "model": "claude-fake"},
                ]
            },
        },
    }
    running = Stack(workdir, overrides).start()
    yield running
    running.stop()


def test_sync_non_streaming(stack: Stack, fake: FakeAnthropic) -> None:
    fake.reset()
    response = client(stack).chat.completions.with_raw_response.create(
        model="claude-fake",
        messages=[{"role": "system", "content": "Be nice."}, *HELLO],
        temperature=0.5,
        stop=["END"],
    )
    completion = response.parse()
    assert completion.choices[0].message.content == TEXT
    assert completion.choices[0].finish_reason == "stop"
    words = len(TEXT.split(" "))
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (
        INPUT_TOKENS,
        words,
    )
    assert completion.usage.total_tokens == INPUT_TOKENS + words
    assert response.headers["x-interlock-provider"] == "claude"
    [sent] = fake.received
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == UPSTREAM_KEY  # the operator's key, never the tenant's
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in {k.lower() for k in sent.headers}
    assert sent.json == {
        "model": "claude-fake",
        "max_tokens": 8192,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}],
        "system": "Be nice.",
        "temperature": 0.5,
        "stop_sequences": ["END"],
    }


async def _collect(stack: Stack, **params: Any) -> list[Any]:
    stream = await async_client(stack).chat.completions.create(stream=True, **params)
    return [chunk async for chunk in stream]


@pytest.mark.parametrize("model", ["claude-fake", "claude/slow-first-byte"])
def test_async_streaming_with_include_usage(stack: Stack, model: str) -> None:
    chunks = asyncio.run(
        _collect(stack, model=model, messages=HELLO, stream_options={"include_usage": True})
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == TEXT
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens == INPUT_TOKENS
    assert last.usage.total_tokens == INPUT_TOKENS + len(TEXT.split(" "))
    assert [c for c in chunks if c.usage is not None] == [last]


def test_streaming_without_include_usage_hides_usage(stack: Stack, fake: FakeAnthropic) -> None:
    fake.reset()
    chunks = asyncio.run(_collect(stack, model="claude-fake", messages=HELLO))
    assert all(c.usage is None and c.choices for c in chunks)
    assert fake.received[-1].json["stream"] is True


def test_tool_call_round_trip(stack: Stack, fake: FakeAnthropic) -> None:
    fake.reset()
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris and ACME price?"}]
    first = client(stack).chat.completions.create(
        model="claude/tool-use", messages=messages, tools=TOOLS, parallel_tool_calls=True
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == TOOL_TEXT
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("toolu_01WeatherAAAA", "get_weather", '{"city":"Paris"}'),
        ("toolu_02StockBBBBBB", "get_stock_price", '{"ticker":"ACME"}'),
    ]
    sent_tools = fake.received[-1].json["tools"]
    assert sent_tools[0]["name"] == "get_weather"
    assert sent_tools[0]["input_schema"] == TOOLS[0]["function"]["parameters"]

    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": calls[0].id, "content": "Sunny"})
    messages.append({"role": "tool", "tool_call_id": calls[1].id, "content": "42 USD"})
    second = client(stack).chat.completions.create(
        model="claude/tool-use", messages=messages, tools=TOOLS
    )
    assert second.choices[0].message.content == "Tool results: Sunny | 42 USD"
    assert second.choices[0].finish_reason == "stop"
    sent = fake.received[-1].json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert [b["type"] for b in sent[1]["content"]] == ["text", "tool_use", "tool_use"]
    assert sent[1]["content"][1]["input"] == TOOL_USES[0]["input"]
    assert [b["type"] for b in sent[2]["content"]] == ["tool_result", "tool_result"]


def test_streamed_tool_calls_use_their_own_index(stack: Stack) -> None:
    stream = client(stack).chat.completions.create(
        model="claude/tool-use", messages=HELLO, tools=TOOLS, stream=True
    )
    text = ""
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        text += choice.delta.content or ""
        for delta in choice.delta.tool_calls or []:
            entry = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += delta.id or ""
            if delta.function:
                entry["name"] += delta.function.name or ""
                entry["arguments"] += delta.function.arguments or ""
    assert text == TOOL_TEXT
    assert finish == "tool_calls"
    # Content blocks 1 and 2 upstream (after the text block) are tool calls 0 and 1 here.
    assert calls == {
        0: {"id": "toolu_01WeatherAAAA", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        1: {
            "id": "toolu_02StockBBBBBB",
            "name": "get_stock_price",
            "arguments": '{"ticker":"ACME"}',
        },
    }


def test_thinking_via_reasoning_effort(stack: Stack, fake: FakeAnthropic) -> None:
    fake.reset()
    completion = client(stack).chat.completions.create(
        model="claude-fake", messages=HELLO, reasoning_effort="low"
    )
    message = completion.choices[0].message
    assert message.content == TEXT
    assert (message.model_extra or {})["reasoning_content"] == THINKING
    sent = fake.received[-1].json
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert sent["max_tokens"] > 1024

    chunks = list(
        client(stack).chat.completions.create(model="claude/thinking", messages=HELLO, stream=True)
    )
    reasoning = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
        for c in chunks
        if c.choices
    )
    assert reasoning == THINKING


def test_cache_usage(stack: Stack) -> None:
    completion = client(stack).chat.completions.create(model="claude/cache", messages=HELLO)
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == 3 + CACHE_READ + CACHE_CREATION
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == CACHE_READ
    assert (usage.prompt_tokens_details.model_extra or {})["cache_creation_tokens"] == (
        CACHE_CREATION
    )


def test_max_tokens_means_length(stack: Stack, fake: FakeAnthropic) -> None:
    completion = client(stack).chat.completions.create(
        model="claude-fake", messages=HELLO, max_completion_tokens=2
    )
    assert completion.choices[0].finish_reason == "length"
    assert fake.received[-1].json["max_tokens"] == 2


def test_json_schema_goes_to_structured_outputs(stack: Stack, fake: FakeAnthropic) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    client(stack).chat.completions.create(
        model="claude-fake",
        messages=HELLO,
        response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
    )
    assert fake.received[-1].json["output_config"] == {
        "format": {"type": "json_schema", "schema": schema}
    }


@pytest.mark.parametrize(
    ("model", "exception", "status"),
    [
        ("claude/rate-limit", openai.RateLimitError, 429),
        ("claude/credit", openai.RateLimitError, 429),  # quota: not retryable, still a 429
        ("claude/overloaded", openai.InternalServerError, 503),
        ("claude/fail-500", openai.InternalServerError, 502),
        ("claude/context", openai.BadRequestError, 400),
        ("claude/too-large", openai.APIStatusError, 413),
        ("claude/fail-401", openai.InternalServerError, 502),
    ],
)
def test_error_mapping(stack: Stack, model: str, exception: type[Exception], status: int) -> None:
    with pytest.raises(exception) as info:
        client(stack).chat.completions.create(model=model, messages=HELLO)
    error = info.value
    assert isinstance(error, openai.APIStatusError)
    assert error.status_code == status
    assert isinstance(error.body, dict) and error.body["message"]
    assert "sk-ant" not in error.response.text and "SECRET" not in error.response.text


def test_failover_on_overloaded(stack: Stack, fake: FakeAnthropic) -> None:
    fake.reset()
    response = client(stack).chat.completions.with_raw_response.create(
        model="claude-resilient", messages=HELLO
    )
    assert response.parse().choices[0].message.content == TEXT
    assert response.headers["x-interlock-attempts"] == "2"
    assert [r.json["model"] for r in fake.received] == ["overloaded", "claude-fake"]


def test_unsupported_params_strict_and_lenient(stack: Stack, fake: FakeAnthropic) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client(stack).chat.completions.create(model="claude-fake", messages=HELLO, n=2)
    assert info.value.body["param"] == "n"
    with pytest.raises(openai.BadRequestError) as json_mode:
        client(stack).chat.completions.create(
            model="claude-fake", messages=HELLO, response_format={"type": "json_object"}
        )
    assert json_mode.value.body["param"] == "response_format"
    fake.reset()
    response = client(stack).chat.completions.with_raw_response.create(
        model="claude-lenient", messages=HELLO, seed=7
    )
    assert response.headers["x-interlock-dropped-params"] == "seed"
    assert "seed" not in fake.received[-1].json


def test_invalid_tool_arguments_are_a_400(stack: Stack, fake: FakeAnthropic) -> None:
    fake.reset()
    messages: Any = [
        *HELLO,
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "x"},
    ]
    with pytest.raises(openai.BadRequestError) as info:
        client(stack).chat.completions.create(model="claude-fake", messages=messages)
    assert info.value.body["param"] == "messages[1].tool_calls[0].function.arguments"
    assert fake.received == []  # rejected before any upstream call


@pytest.mark.parametrize("model", ["claude/error-after-200", "claude/cut-stream"])
def test_stream_failure_after_first_byte(stack: Stack, model: str) -> None:
    stream = client(stack).chat.completions.create(model=model, messages=HELLO, stream=True)
    received = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            received.append(chunk)
    assert received  # the first chunks arrived before the failure


def test_error_after_200_on_the_wire(stack: Stack) -> None:
    body = {"model": "claude/error-after-200", "messages": HELLO, "stream": True}
    response = raw.post(f"{stack.edge_url}/v1/chat/completions", body, stack.token())
    assert response.status == 200
    text = response.body.decode()
    assert "[DONE]" not in text
    last = text.strip().split("\n\n")[-1]
    error = raw.RawResponse(200, {}, last.removeprefix("data: ").encode()).json()["error"]
    assert error["type"] == "service_unavailable"
    assert "overloaded" in error["message"]  # the gateway's words, never the upstream's
