"""Azure OpenAI through the real edge and core, with the official openai SDK as the client."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.support import raw
from tests.support.fake_azure import PROMPT_FILTER, TEXT, FakeAzure
from tests.support.sdk import async_client, client
from tests.support.stack import Stack

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the capital of France?"}
]


def _provider(url: str, key: str, **options: str) -> dict[str, Any]:
    return {
        "kind": "azure",
        "base_url": url,
        "api_key": key,
        "allow_any_model": True,
        "options": options,
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, azure: FakeAzure) -> Iterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("azure-stack")
    overrides = {
        "providers": {
            "azure": _provider(azure.url, "azure-key", api_version="2024-10-21"),
            "azure-v1": _provider(azure.url, "azure-key"),
            "azure-entra": _provider(azure.url, "entra-token", auth="bearer"),
            "azure-old": _provider(azure.url, "azure-key", api_version="2024-06-01"),
            "azure-badkey": _provider(azure.url, "azure-wrong-key-1234"),
        },
        "models": {
            "azure-chat": {"provider": "azure", "model": "gpt-4o"},
            "azure-v1-chat": {"provider": "azure-v1", "model": "gpt-4o"},
            "azure-entra-chat": {"provider": "azure-entra", "model": "gpt-4o"},
            "azure-old-chat": {"provider": "azure-old", "model": "gpt-4o"},
            "azure-badkey-chat": {"provider": "azure-badkey", "model": "gpt-4o"},
            "azure-guarded": {
                "targets": [
                    {"provider": "azure", "model": "filtered-prompt"},
                    {"provider": "azure-v1", "model": "gpt-4o"},
                ]
            },
            "azure-busy": {
                "targets": [
                    {"provider": "azure", "model": "throttled"},
                    {"provider": "azure-v1", "model": "gpt-4o"},
                ]
            },
        },
    }
    running = Stack(workdir, overrides).start()
    yield running
    running.stop()


def test_sync_deployments_path_with_api_key(stack: Stack, azure: FakeAzure) -> None:
    azure.reset()
    response = client(stack).chat.completions.with_raw_response.create(
        model="azure-chat", messages=MESSAGES
    )
    completion = response.parse()
    assert completion.choices[0].message.content == TEXT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens == 21
    assert response.headers["x-interlock-provider"] == "azure"
    [sent] = azure.received
    assert sent.path == "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
    assert sent.headers["api-key"] == "azure-key"
    assert "Authorization" not in sent.headers  # the tenant's token never goes upstream
    assert sent.json["model"] == "gpt-4o" and "stream_options" not in sent.json


def test_v1_path_with_entra_bearer_token(stack: Stack, azure: FakeAzure) -> None:
    azure.reset()
    completion = client(stack).chat.completions.create(model="azure-entra-chat", messages=MESSAGES)
    assert completion.choices[0].message.content == TEXT
    [sent] = azure.received
    assert sent.path == "/openai/v1/chat/completions"
    assert sent.headers["Authorization"] == "Bearer entra-token"
    assert "api-key" not in sent.headers and sent.json["model"] == "gpt-4o"


def test_streaming_with_include_usage_drops_the_filter_chunk(
    stack: Stack, azure: FakeAzure
) -> None:
    azure.reset()

    async def run() -> list[Any]:
        stream = await async_client(stack).chat.completions.create(
            model="azure-v1-chat",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        return [chunk async for chunk in stream]

    chunks = asyncio.run(run())
    assert azure.received[-1].json["stream_options"] == {"include_usage": True}
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None and last.usage.total_tokens == 21
    assert [c for c in chunks if c.usage is not None] == [last]
    assert all(c.choices for c in chunks[:-1])  # the prompt-filter chunk is not forwarded
    assert {c.id for c in chunks} == {"chatcmpl-azure1"}
    first = chunks[0]
    assert first.choices[0].delta.role == "assistant"
    assert (first.model_extra or {}).get("prompt_filter_results") == PROMPT_FILTER
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == TEXT


def test_sync_streaming_without_usage_on_the_wire(stack: Stack) -> None:
    stream = client(stack).chat.completions.create(
        model="azure-chat", messages=MESSAGES, stream=True
    )
    chunks = list(stream)
    assert all(c.choices and c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == TEXT
    # The bytes a non-SDK client sees: no event with empty choices, and a clean [DONE].
    body = {"model": "azure-chat", "messages": MESSAGES, "stream": True}
    response = raw.post(f"{stack.edge_url}/v1/chat/completions", body, stack.token())
    events = [e for e in response.body.decode().split("\n\n") if e.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    payloads = [orjson.loads(e[len("data: ") :]) for e in events[:-1]]
    assert payloads and all(p["choices"] for p in payloads)
    assert payloads[0]["choices"][0]["delta"]["role"] == "assistant"


def test_old_api_version_streams_without_stream_options(stack: Stack, azure: FakeAzure) -> None:
    azure.reset()
    stream = client(stack).chat.completions.create(
        model="azure-old-chat", messages=MESSAGES, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == TEXT
    [sent] = azure.received
    assert sent.path.endswith("api-version=2024-06-01") and "stream_options" not in sent.json


def test_content_filter_finish_reason_passes_through(stack: Stack) -> None:
    completion = client(stack).chat.completions.create(
        model="azure/filtered-output", messages=MESSAGES
    )
    assert completion.choices[0].finish_reason == "content_filter"
    finishes = [
        c.choices[0].finish_reason
        for c in client(stack).chat.completions.create(
            model="azure/filtered-output", messages=MESSAGES, stream=True
        )
        if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["content_filter"]


def test_asynchronous_filter_annotations(stack: Stack) -> None:
    chunks = list(
        client(stack).chat.completions.create(
            model="azure-v1/async-filter", messages=MESSAGES, stream=True
        )
    )
    assert {c.id for c in chunks} == {"chatcmpl-azure1"}
    assert all(c.choices and c.choices[0].delta is not None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "The capital of"


@pytest.mark.parametrize("stream", [False, True])
def test_prompt_filter_error_is_400_and_never_failed_over(
    stack: Stack, azure: FakeAzure, stream: bool
) -> None:
    azure.reset()
    with pytest.raises(openai.BadRequestError) as info:
        result = client(stack).chat.completions.create(
            model="azure-guarded", messages=MESSAGES, stream=stream
        )
        if stream:
            list(result)
    assert info.value.status_code == 400
    body = info.value.body
    assert isinstance(body, dict) and body["code"] == "content_filter"
    assert body["param"] == "prompt" and "content management policy" in body["message"]
    assert dict(azure.calls) == {"filtered-prompt": 1}  # the second target was never tried


def test_throttled_deployment_fails_over(stack: Stack, azure: FakeAzure) -> None:
    azure.reset()
    response = client(stack).chat.completions.with_raw_response.create(
        model="azure-busy", messages=MESSAGES
    )
    assert response.parse().choices[0].message.content == TEXT
    assert response.headers["x-interlock-attempts"] == "2"
    assert dict(azure.calls) == {"throttled": 1, "gpt-4o": 1}


def test_throttled_without_fallback_is_a_clean_429(stack: Stack) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        client(stack).chat.completions.create(model="azure/throttled", messages=MESSAGES)
    body = info.value.body
    assert isinstance(body, dict) and body["code"] == "rate_limit_exceeded"
    assert "aka.ms" not in info.value.response.text and "S0" not in info.value.response.text


def test_quota_and_missing_deployment(stack: Stack) -> None:
    with pytest.raises(openai.RateLimitError) as quota:
        client(stack).chat.completions.create(model="azure/out-of-quota", messages=MESSAGES)
    assert isinstance(quota.value.body, dict) and quota.value.body["code"] == "insufficient_quota"
    with pytest.raises(openai.APIStatusError) as missing:
        client(stack).chat.completions.create(model="azure/no-such-deploy", messages=MESSAGES)
    assert missing.value.status_code == 502


def test_rejected_key_is_never_relayed(stack: Stack) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client(stack).chat.completions.create(model="azure-badkey-chat", messages=MESSAGES)
    assert info.value.status_code == 502
    assert "azure-wrong-key" not in info.value.response.text
    assert "azure-wrong-key" not in stack.read_logs()
