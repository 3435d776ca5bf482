"""The official OpenAI SDK -> edge -> core -> Gemini adapter -> fake Gemini, over real sockets.

Both endpoint flavours are exercised: AI Studio (key in x-goog-api-key) and Vertex AI
(project/location path, bearer token). The fake rejects malformed Gemini requests the way the
real API does, so a passing round trip means the adapter's output is acceptable upstream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionMessage, ChatCompletionMessageFunctionToolCall

from tests.support import raw
from tests.support.fake_gemini import (
    LEAKY_KEY_FRAGMENT,
    SIGNATURE,
    SIGNATURE_2,
    TEXT,
    TOOL_TEXT,
    FakeGemini,
    GeminiReceived,
)
from tests.support.sdk import async_client, client
from tests.support.stack import Stack

MESSAGES: list[Any] = [{"role": "user", "content": "Say hello"}]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
TIME_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": ["string", "null"]}}},
    },
}
VERTEX_PATH = "/v1/projects/proj-1/locations/us-central1/publishers/google/models/"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGemini]:
    server = FakeGemini()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, fake: FakeGemini) -> Iterator[Stack]:
    common = {"kind": "gemini", "base_url": fake.url, "allow_any_model": True}
    vertex = {"project": "proj-1", "location": "us-central1"}
    overrides = {
        "providers": {
            "gemini": {**common, "api_key": fake.api_key},
            "vertex": {**common, "api_key": fake.token, "options": {"vertex": vertex}},
            "badkey": {**common, "api_key": "AIza-revoked"},
            "badtoken": {**common, "api_key": "ya29.expired", "options": {"vertex": vertex}},
            "impatient": {**common, "api_key": fake.api_key, "timeout": "200ms"},
        },
        "models": {
            "gemini-flash": {"provider": "gemini", "model": "gemini-2.5-flash"},
            "gemini-lenient": {
                "provider": "gemini",
                "model": "gemini-2.5-flash",
                "params": "lenient",
            },
            "gemini-failover": {
                "targets": [
                    {"provider": "gemini", "model": "fail-503"},
                    {"provider": "vertex", "model": "gemini-2.5-flash"},
                ]
            },
        },
    }
    workdir: Path = tmp_path_factory.mktemp("gemini-stack")
    running = Stack(workdir, overrides).start()
    yield running
    running.stop()


def function_calls(message: ChatCompletionMessage) -> list[ChatCompletionMessageFunctionToolCall]:
    calls = message.tool_calls or []
    assert all(isinstance(c, ChatCompletionMessageFunctionToolCall) for c in calls)
    return [c for c in calls if isinstance(c, ChatCompletionMessageFunctionToolCall)]


def last(fake: FakeGemini) -> GeminiReceived:
    received = fake.received[-1]
    assert isinstance(received, GeminiReceived)
    return received


def test_ai_studio_non_streaming(stack: Stack, fake: FakeGemini) -> None:
    fake.reset()
    response = client(stack).chat.completions.with_raw_response.create(
        model="gemini-flash", messages=MESSAGES, temperature=0.3, max_tokens=50
    )
    completion = response.parse()
    assert completion.choices[0].message.content == TEXT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (11, 5)
    assert completion.usage.total_tokens == 16
    assert response.headers["x-interlock-provider"] == "gemini"
    sent = last(fake)
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"  # no ?key=
    assert sent.headers["x-goog-api-key"] == fake.api_key
    assert "Authorization" not in sent.headers  # the tenant's token never goes upstream
    assert sent.json == {
        "contents": [{"role": "user", "parts": [{"text": "Say hello"}]}],
        "generationConfig": {"temperature": 0.3, "maxOutputTokens": 50},
    }


def test_vertex_non_streaming_and_streaming(stack: Stack, fake: FakeGemini) -> None:
    fake.reset()
    completion = client(stack).chat.completions.create(
        model="vertex/gemini-2.5-pro", messages=MESSAGES
    )
    assert completion.choices[0].message.content == TEXT
    sent = last(fake)
    assert sent.path == VERTEX_PATH + "gemini-2.5-pro:generateContent"
    assert sent.headers["Authorization"] == f"Bearer {fake.token}"
    assert "x-goog-api-key" not in sent.headers
    stream = client(stack).chat.completions.create(
        model="vertex/gemini-2.5-pro", messages=MESSAGES, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream) == TEXT
    assert last(fake).path == VERTEX_PATH + "gemini-2.5-pro:streamGenerateContent?alt=sse"


@pytest.mark.parametrize("model", ["gemini-flash", "vertex/gemini-2.5-flash"])
def test_async_streaming_with_include_usage(stack: Stack, fake: FakeGemini, model: str) -> None:
    async def run() -> list[Any]:
        stream = await async_client(stack).chat.completions.create(
            model=model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        return [chunk async for chunk in stream]

    chunks = asyncio.run(run())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == TEXT
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    final = chunks[-1]
    assert final.choices == []
    assert final.usage is not None and final.usage.total_tokens == 16
    assert [c for c in chunks if c.usage is not None] == [final]


def test_streaming_without_include_usage_hides_usage(stack: Stack) -> None:
    chunks = list(
        client(stack).chat.completions.create(model="gemini-flash", messages=MESSAGES, stream=True)
    )
    assert chunks and all(c.choices and c.usage is None for c in chunks)


def _reassemble(stream: Any) -> tuple[dict[int, dict[str, str]], str | None]:
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for delta in choice.delta.tool_calls or []:
            entry = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += delta.id or ""
            if delta.function:
                entry["name"] += delta.function.name or ""
                entry["arguments"] += delta.function.arguments or ""
    return calls, finish


def _first_turn(stack: Stack, model: str, tools: list[Any], stream: bool) -> Any:
    if not stream:
        completion = client(stack).chat.completions.create(
            model=model, messages=MESSAGES, tools=tools
        )
        choice = completion.choices[0]
        assert choice.finish_reason == "tool_calls"
        return [
            {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
            for c in function_calls(choice.message)
        ]
    calls, finish = _reassemble(
        client(stack).chat.completions.create(
            model=model, messages=MESSAGES, tools=tools, stream=True
        )
    )
    assert finish == "tool_calls"  # Gemini said STOP, in a later event than the call
    return [calls[i] for i in sorted(calls)]


@pytest.mark.parametrize("stream", [False, True])
def test_tool_call_round_trip_keeps_the_thought_signature(
    stack: Stack, fake: FakeGemini, stream: bool
) -> None:
    fake.reset()
    [call] = _first_turn(stack, "gemini/function-call", [WEATHER_TOOL], stream)
    assert call["name"] == "get_weather"
    assert orjson.loads(call["arguments"]) == {"city": "Paris"}
    declared = last(fake).json["tools"][0]["functionDeclarations"][0]
    assert declared["parameters"] == {
        "type": "OBJECT",
        "properties": {"city": {"type": "STRING"}},
        "required": ["city"],
    }
    # What a client does next: echo the assistant turn, then answer the call by its id.
    history = [
        *MESSAGES,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call["id"], "content": '{"sky": "clear", "c": 21}'},
    ]
    answer = client(stack).chat.completions.create(
        model="gemini/function-call", messages=history, tools=[WEATHER_TOOL]
    )
    assert answer.choices[0].message.content == TOOL_TEXT
    assert answer.choices[0].finish_reason == "stop"
    sent = last(fake).json["contents"]
    assert sent[1] == {
        "role": "model",
        "parts": [
            {
                "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                "thoughtSignature": SIGNATURE,  # exactly as Gemini issued it
            }
        ],
    }
    assert sent[2] == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"sky": "clear", "c": 21}}}
        ],
    }


def test_parallel_calls_round_trip_with_sdk_message_objects(stack: Stack, fake: FakeGemini) -> None:
    fake.reset()
    tools = [WEATHER_TOOL, TIME_TOOL]
    completion = client(stack).chat.completions.create(
        model="gemini/parallel-calls", messages=MESSAGES, tools=tools, tool_choice="required"
    )
    message = completion.choices[0].message
    assert [c.function.name for c in function_calls(message)] == ["get_weather", "get_time"]
    assert last(fake).json["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    history: list[Any] = [*MESSAGES, message.model_dump(exclude_none=True)]
    for call in message.tool_calls or []:
        history.append({"role": "tool", "tool_call_id": call.id, "content": "ok"})
    answer = client(stack).chat.completions.create(
        model="gemini/parallel-calls", messages=history, tools=tools
    )
    assert answer.choices[0].message.content == TOOL_TEXT
    model_turn, results = last(fake).json["contents"][1:3]
    assert [p.get("thoughtSignature") for p in model_turn["parts"]] == [SIGNATURE_2, None]
    assert [p["functionResponse"]["name"] for p in results["parts"]] == ["get_weather", "get_time"]


def test_tool_history_without_signature_is_rejected_as_gemini_3_does(stack: Stack) -> None:
    history = [
        *MESSAGES,
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_from_another_gateway",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_from_another_gateway", "content": "sunny"},
    ]
    with pytest.raises(openai.BadRequestError) as caught:
        client(stack).chat.completions.create(
            model="gemini-flash", messages=history, tools=[WEATHER_TOOL]
        )
    assert "thought_signature" in caught.value.message


def test_thinking_becomes_reasoning_content(stack: Stack, fake: FakeGemini) -> None:
    fake.reset()
    completion = client(stack).chat.completions.create(
        model="gemini/thinking", messages=MESSAGES, reasoning_effort="low"
    )
    message = completion.choices[0].message
    assert message.content == TEXT
    assert (message.model_extra or {})["reasoning_content"] == "Let me think."
    assert last(fake).json["generationConfig"] == {
        "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}
    }
    usage = completion.usage
    assert usage is not None
    assert usage.completion_tokens == 31 and usage.prompt_tokens == 40
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 25
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 32
    chunks = list(
        client(stack).chat.completions.create(
            model="gemini/thinking", messages=MESSAGES, stream=True
        )
    )
    reasoning = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content", "") for c in chunks
    )
    assert reasoning == "Let me think."


@pytest.mark.parametrize(
    ("model", "finish"),
    [
        ("gemini/safety", "content_filter"),
        ("gemini/prompt-blocked", "content_filter"),
        ("gemini/max-tokens", "length"),
    ],
)
def test_finish_reasons(stack: Stack, model: str, finish: str) -> None:
    completion = client(stack).chat.completions.create(model=model, messages=MESSAGES)
    assert completion.choices[0].finish_reason == finish
    chunks = list(
        client(stack).chat.completions.create(model=model, messages=MESSAGES, stream=True)
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == finish


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [
        ("gemini/fail-429", 429, "rate_limit_exceeded"),
        ("gemini/quota-day", 429, "insufficient_quota"),
        ("gemini/fail-500", 502, "internal"),
        ("gemini/fail-503", 503, "unavailable"),
        ("gemini/fail-504", 504, "deadline_exceeded"),
        ("gemini/context", 400, "context_length_exceeded"),
        ("gemini/malformed-call", 502, "malformed_function_call"),
        ("badkey/gemini-2.5-flash", 502, "upstream_auth_failed"),
        ("badtoken/gemini-2.5-flash", 502, "upstream_auth_failed"),
        # the dispatcher's clock, named: timeout_first_byte (stream) or timeout_completion
        ("impatient/very-slow", 504, "timeout_"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_errors_reach_the_client_as_openai_errors(
    stack: Stack, model: str, status: int, code: str | None, stream: bool
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        result = client(stack).chat.completions.create(
            model=model, messages=MESSAGES, stream=stream
        )
        if stream:
            list(result)
    error = caught.value
    assert error.status_code == status
    body = error.body if isinstance(error.body, dict) else {}
    if code == "timeout_":
        code += "first_byte" if stream else "completion"
    assert body.get("code") == code
    assert LEAKY_KEY_FRAGMENT not in str(error.body) and LEAKY_KEY_FRAGMENT not in error.message


def test_rate_limit_has_the_openai_error_type(stack: Stack) -> None:
    response = raw.post(
        f"{stack.edge_url}/v1/chat/completions",
        {"model": "gemini/fail-429", "messages": MESSAGES},
        stack.token(),
    )
    assert response.status == 429
    assert response.json()["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize("model", ["gemini/error-after-200", "gemini/cut-stream"])
def test_stream_failing_after_first_byte_ends_with_an_error(stack: Stack, model: str) -> None:
    text = ""
    with pytest.raises(openai.APIError):
        for chunk in client(stack).chat.completions.create(
            model=model, messages=MESSAGES, stream=True
        ):
            text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert text == "Hello from"  # what arrived before the failure was relayed


def test_slow_first_byte_is_still_served(stack: Stack) -> None:
    chunks = list(
        client(stack).chat.completions.create(
            model="gemini/slow-first-byte", messages=MESSAGES, stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == TEXT


def test_failover_before_first_byte(stack: Stack, fake: FakeGemini) -> None:
    fake.reset()
    response = client(stack).chat.completions.with_raw_response.create(
        model="gemini-failover", messages=MESSAGES
    )
    assert response.parse().choices[0].message.content == TEXT
    assert response.headers["x-interlock-provider"] == "vertex"
    assert response.headers["x-interlock-attempts"] == "2"
    assert [r.model for r in fake.received if isinstance(r, GeminiReceived)][
        -1
    ] == "gemini-2.5-flash"


def test_structured_output_and_images(stack: Stack, fake: FakeGemini) -> None:
    fake.reset()
    client(stack).chat.completions.create(
        model="gemini-flash",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                    },
                ],
            }
        ],
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "desc",
                "strict": True,
                "schema": {
                    "type": "object",
                    "properties": {
                        "label": {"type": "string"},
                        "score": {"type": ["number", "null"]},
                    },
                    "required": ["label", "score"],
                    "additionalProperties": False,
                },
            },
        },
        n=2,
    )
    sent = last(fake).json
    assert sent["contents"][0]["parts"][1] == {
        "inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}
    }
    assert sent["generationConfig"] == {
        "candidateCount": 2,
        "responseMimeType": "application/json",
        "responseSchema": {
            "type": "OBJECT",
            "properties": {
                "label": {"type": "STRING"},
                "score": {"type": "NUMBER", "nullable": True},
            },
            "required": ["label", "score"],
        },
    }


def test_n_candidates_become_choices(stack: Stack) -> None:
    completion = client(stack).chat.completions.create(model="gemini-flash", messages=MESSAGES, n=3)
    assert [(c.index, c.message.content) for c in completion.choices] == [
        (i, TEXT) for i in range(3)
    ]


def test_unsupported_params_strict_vs_lenient(stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(stack).chat.completions.create(
            model="gemini-flash", messages=MESSAGES, logprobs=True
        )
    assert caught.value.param == "logprobs"
    response = client(stack).chat.completions.with_raw_response.create(
        model="gemini-lenient", messages=MESSAGES, logprobs=True, user="u-1"
    )
    assert response.parse().choices[0].message.content == TEXT
    assert response.headers["x-interlock-dropped-params"] == "logprobs,user"
