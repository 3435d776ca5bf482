"""The official OpenAI SDK -> edge -> core -> fake Bedrock (SigV4-verifying), over loopback."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest

from tests.support import raw
from tests.support.fake_bedrock import (
    ACCESS_KEY,
    FORCED_INPUT,
    SECRET_KEY,
    SESSION_TOKEN,
    TEXT,
    FakeBedrock,
)
from tests.support.sdk import async_client, client
from tests.support.stack import Stack

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.fake.text-v1:0"
API_KEY = "bedrock-api-key-test"
MESSAGES: list[Any] = [{"role": "user", "content": "Say hello"}]
WEATHER_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"{name} for a place",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    for name in ("get_weather", "get_time")
]


def _provider(fake: FakeBedrock, **extra: Any) -> dict[str, Any]:
    options = {
        "region": "us-east-1",
        "access_key_id": ACCESS_KEY,
        "secret_access_key": SECRET_KEY,
        "session_token": SESSION_TOKEN,
    }
    return {
        "kind": "bedrock",
        "base_url": fake.url,
        "allow_any_model": True,
        "options": {**options, **extra.pop("options", {})},
        **extra,
    }


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeBedrock]:
    server = FakeBedrock(api_keys=(API_KEY,))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, fake: FakeBedrock) -> Iterator[Stack]:
    overrides = {
        # Many tests here make `bedrock/*` fail on purpose, before and after the first chunk;
        # a stream's failure counts against its breaker, so keep it out of their way.
        "core": {"resilience": {"breaker_min_requests": 1000}},
        "providers": {
            "bedrock": _provider(fake),
            "bedrock-wrong": _provider(fake, options={"secret_access_key": "not-the-secret"}),
            "bedrock-slow": _provider(fake, timeout="100ms"),
            "bedrock-key": {
                "kind": "bedrock",
                "base_url": fake.url,
                "api_key": API_KEY,
                "allow_any_model": True,
                "options": {"region": "us-east-1"},
            },
        },
        "models": {
            "claude-bedrock": {"provider": "bedrock", "model": HAIKU},
            "bedrock-failover": {
                "targets": [
                    {"provider": "bedrock", "model": "throttle"},
                    {"provider": "bedrock", "model": "fake.text-v1:0"},
                ]
            },
        },
    }
    running = Stack(tmp_path_factory.mktemp("bedrock-stack"), overrides).start()
    yield running
    running.stop()


def stream_text(stack: Stack, model: str, **kwargs: Any) -> tuple[str, list[Any]]:
    chunks = list(
        client(stack).chat.completions.create(model=model, messages=MESSAGES, stream=True, **kwargs)
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


def test_non_streaming_signed_converse(stack: Stack, fake: FakeBedrock) -> None:
    fake.reset()
    response = client(stack).chat.completions.with_raw_response.create(
        model="claude-bedrock",
        messages=[{"role": "system", "content": "Be brief."}, *MESSAGES],
        max_tokens=50,
        temperature=0.5,
        stop=["END"],
    )
    completion = response.parse()
    assert completion.choices[0].message.content == TEXT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (25, 7)
    assert response.headers["x-interlock-provider"] == "bedrock"
    [call] = fake.calls_for(HAIKU)
    assert call.operation == "converse"
    assert call.received.path == f"/model/{HAIKU}/converse"
    assert call.received.json == {
        "system": [{"text": "Be brief."}],
        "messages": [{"role": "user", "content": [{"text": "Say hello"}]}],
        "inferenceConfig": {"maxTokens": 50, "temperature": 0.5, "stopSequences": ["END"]},
    }
    assert call.received.headers["Authorization"].startswith("AWS4-HMAC-SHA256 ")
    assert fake.rejected == []  # the signature was recomputed by the fake and matched


def test_async_streaming_with_include_usage(stack: Stack, fake: FakeBedrock) -> None:
    fake.reset()

    async def run() -> list[Any]:
        stream = await async_client(stack).chat.completions.create(
            model="claude-bedrock",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        return [chunk async for chunk in stream]

    chunks = asyncio.run(run())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (
        25,
        7,
        32,
    )
    assert [c for c in chunks if c.usage is not None] == [last]
    [call] = fake.calls_for(HAIKU)
    assert call.operation == "converse-stream"
    assert call.received.headers["Accept"] == "application/vnd.amazon.eventstream"


def test_streaming_without_include_usage_hides_usage(stack: Stack) -> None:
    text, chunks = stream_text(stack, "claude-bedrock")
    assert text == TEXT
    assert all(c.usage is None and c.choices for c in chunks)


def test_tool_call_round_trip(stack: Stack, fake: FakeBedrock) -> None:
    fake.reset()
    sdk = client(stack)
    first = sdk.chat.completions.create(
        model="bedrock/fake.tools-v1:0", messages=MESSAGES, tools=WEATHER_TOOLS, tool_choice="auto"
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    calls = choice.message.tool_calls or []
    functions = [(c.id, c.function) for c in calls if c.type == "function"]
    assert [(i, f.name, orjson.loads(f.arguments)) for i, f in functions] == [
        ("tooluse_weather_01", "get_weather", {"city": "Paris"}),
        ("tooluse_time_02", "get_time", {"timezone": "Europe/Paris"}),
    ]
    follow_up: list[Any] = [
        *MESSAGES,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": calls[0].id, "content": "18 C and sunny"},
        {"role": "tool", "tool_call_id": calls[1].id, "content": "14:05"},
    ]
    second = sdk.chat.completions.create(
        model="bedrock/fake.tools-v1:0", messages=follow_up, tools=WEATHER_TOOLS
    )
    assert second.choices[0].message.content == "Tool results: 18 C and sunny | 14:05"
    assert second.choices[0].finish_reason == "stop"
    sent = fake.calls_for("fake.tools-v1:0")[-1].received.json
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert [b["toolResult"]["toolUseId"] for b in sent["messages"][2]["content"]] == [
        "tooluse_weather_01",
        "tooluse_time_02",
    ]
    assert sent["messages"][1]["content"][1]["toolUse"]["input"] == {"city": "Paris"}
    assert [t["toolSpec"]["name"] for t in sent["toolConfig"]["tools"]] == [
        "get_weather",
        "get_time",
    ]


def test_streamed_tool_calls_reassemble_by_index(stack: Stack) -> None:
    text, chunks = stream_text(stack, "bedrock/fake.tools-v1:0", tools=WEATHER_TOOLS)
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += delta.id or ""
            entry["name"] += (delta.function.name if delta.function else None) or ""
            entry["arguments"] += (delta.function.arguments if delta.function else None) or ""
    assert text == "Let me check."
    assert calls == {
        0: {"id": "tooluse_weather_01", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        1: {
            "id": "tooluse_time_02",
            "name": "get_time",
            "arguments": '{"timezone":"Europe/Paris"}',
        },
    }
    assert [c.choices[0].finish_reason for c in chunks][-1] == "tool_calls"


@pytest.mark.parametrize("stream", [False, True])
def test_throttling_is_a_429_envelope(stack: Stack, stream: bool) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        result = client(stack).chat.completions.create(
            model="bedrock/throttle", messages=MESSAGES, stream=stream
        )
        if stream:
            list(result)
    assert info.value.status_code == 429
    body: Any = info.value.body
    assert body["type"] == "rate_limit_error" and body["code"] == "rate_limit_exceeded"
    assert "rate limiting" in body["message"]  # the gateway's words, never the upstream's


def test_failover_after_throttling(stack: Stack, fake: FakeBedrock) -> None:
    fake.reset()
    response = client(stack).chat.completions.with_raw_response.create(
        model="bedrock-failover", messages=MESSAGES
    )
    assert response.parse().choices[0].message.content == TEXT
    assert response.headers["x-interlock-attempts"] == "2"
    assert [c.model for c in fake.log] == ["throttle", "fake.text-v1:0"]


@pytest.mark.parametrize(("model", "status"), [("fail-500", 502), ("fail-503", 503)])
def test_server_errors(stack: Stack, model: str, status: int) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        client(stack).chat.completions.create(model=f"bedrock/{model}", messages=MESSAGES)
    assert info.value.status_code == status


def test_context_too_long_is_a_400_with_code(stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client(stack).chat.completions.create(model="bedrock/context", messages=MESSAGES)
    body: Any = info.value.body
    assert body["code"] == "context_length_exceeded"
    assert body["message"] == "Input is too long for requested model."


@pytest.mark.parametrize(
    ("model", "rejection"),
    [("bedrock-wrong/fake.text-v1:0", "InvalidSignatureException"), ("bedrock/denied", None)],
)
def test_upstream_auth_failures_are_masked(
    stack: Stack, fake: FakeBedrock, model: str, rejection: str | None
) -> None:
    fake.reset()
    with pytest.raises(openai.APIStatusError) as info:
        client(stack).chat.completions.create(model=model, messages=MESSAGES)
    assert info.value.status_code == 502  # the operator's credentials, not the tenant's
    text = info.value.response.text
    assert ACCESS_KEY not in text and "signature" not in text.lower()
    assert fake.rejected == ([rejection] if rejection else [])


@pytest.mark.parametrize(
    ("model", "code"),
    [("bedrock/throttle-midstream", "rate_limit_exceeded"), ("bedrock/stream-error", None)],
)
def test_exception_frames_after_200_end_with_an_error_event(
    stack: Stack, model: str, code: str | None
) -> None:
    received = []
    with pytest.raises(openai.APIError):
        for chunk in client(stack).chat.completions.create(
            model=model, messages=MESSAGES, stream=True
        ):
            received.append(chunk)
    assert received  # the first chunks reached the client before the failure
    response = raw.post(
        f"{stack.edge_url}/v1/chat/completions",
        {"model": model, "messages": MESSAGES, "stream": True},
        stack.token(),
    )
    assert response.status == 200
    text = response.body.decode()
    assert "[DONE]" not in text
    last = orjson.loads(text.strip().split("\n\n")[-1].removeprefix("data: "))
    assert last["error"]["code"] == code


def test_cut_stream_ends_with_an_error_event(stack: Stack) -> None:
    received = []
    with pytest.raises(openai.APIError):
        for chunk in client(stack).chat.completions.create(
            model="bedrock/cut-stream", messages=MESSAGES, stream=True
        ):
            received.append(chunk)
    assert received


def test_slow_first_byte_and_provider_timeout(stack: Stack) -> None:
    slow = client(stack).chat.completions.create(model="bedrock/slow-first-byte", messages=MESSAGES)
    assert slow.choices[0].message.content == TEXT
    with pytest.raises(openai.APIStatusError) as info:
        client(stack).chat.completions.create(
            model="bedrock-slow/slow-first-byte", messages=MESSAGES
        )
    assert info.value.status_code == 504


def test_arn_model_id_with_slash_and_colons_is_signed_as_sent(
    stack: Stack, fake: FakeBedrock
) -> None:
    fake.reset()
    text, _ = stream_text(stack, f"bedrock/{ARN}")
    assert text == TEXT
    [call] = fake.log
    assert call.model == ARN and fake.rejected == []
    assert call.received.path == (
        "/model/arn:aws:bedrock:us-east-1:123456789012:inference-profile%2Fus.fake.text-v1:0"
        "/converse-stream"
    )


def test_bedrock_api_key_is_a_bearer_token(stack: Stack, fake: FakeBedrock) -> None:
    fake.reset()
    completion = client(stack).chat.completions.create(
        model="bedrock-key/fake.text-v1:0", messages=MESSAGES
    )
    assert completion.choices[0].message.content == TEXT
    assert fake.log[0].received.headers["Authorization"] == f"Bearer {API_KEY}"


@pytest.mark.parametrize("stream", [False, True])
def test_response_format_json_schema_is_emulated(stack: Stack, stream: bool) -> None:
    response_format: Any = {
        "type": "json_schema",
        "json_schema": {
            "name": "verdict",
            "schema": {
                "type": "object",
                "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}},
            },
        },
    }
    sdk = client(stack)
    if stream:
        content, chunks = stream_text(stack, "claude-bedrock", response_format=response_format)
        finish = [c.choices[0].finish_reason for c in chunks][-1]
    else:
        completion = sdk.chat.completions.create(
            model="claude-bedrock", messages=MESSAGES, response_format=response_format
        )
        content = completion.choices[0].message.content or ""
        finish = completion.choices[0].finish_reason
    assert orjson.loads(content) == FORCED_INPUT
    assert finish == "stop"


def test_data_url_image_is_sent_as_bytes(stack: Stack, fake: FakeBedrock) -> None:
    fake.reset()
    png = base64.b64encode(b"\x89PNG\r\n\x1a\nfake-image").decode()
    client(stack).chat.completions.create(
        model="claude-bedrock",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
                ],
            }
        ],
    )
    [call] = fake.log
    assert call.received.json["messages"][0]["content"][1] == {
        "image": {"format": "png", "source": {"bytes": png}}
    }


def test_reasoning_and_cache_usage(stack: Stack) -> None:
    sdk = client(stack)
    thought = sdk.chat.completions.create(model="bedrock/fake.reasoning-v1:0", messages=MESSAGES)
    assert thought.choices[0].message.content == TEXT
    assert (thought.choices[0].message.model_extra or {})["reasoning_content"] == (
        "The user greets me."
    )
    _, chunks = stream_text(stack, "bedrock/fake.reasoning-v1:0")
    reasoning = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks
    )
    assert reasoning == "The user greets me."
    cached = sdk.chat.completions.create(model="bedrock/cache", messages=MESSAGES)
    usage = cached.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens == 13 + 1504 + 100
    assert usage.prompt_tokens_details.cached_tokens == 1504


def test_guardrail_is_content_filter(stack: Stack) -> None:
    completion = client(stack).chat.completions.create(model="bedrock/guardrail", messages=MESSAGES)
    assert completion.choices[0].finish_reason == "content_filter"


def test_unmapped_params_are_rejected_by_name(stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client(stack).chat.completions.create(model="claude-bedrock", messages=MESSAGES, n=2)
    body: Any = info.value.body
    assert body["param"] == "n" and body["code"] == "unsupported_parameter"
