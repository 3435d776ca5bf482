"""The official Anthropic SDK -> edge -> core -> translated targets, over real loopback sockets.

Covers POST /v1/messages against the built-in mock and an OpenAI-shaped upstream (fake_openai):
streaming and not, a tool-use round trip, and every error in the Anthropic envelope.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest

from shared import hop
from tests.support import raw
from tests.support.fake_openai import TEXT, FakeOpenAI
from tests.support.stack import Stack

MESSAGES: list[Any] = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI) -> Iterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("messages-sdk")
    overrides = {
        "providers": {
            "mock": {"kind": "mock", "allow_any_model": True},
            "fake": {
                "kind": "openai",
                "base_url": fake.base_url,
                "api_key": "sk-test-upstream",
                "allow_any_model": True,
            },
        },
        "models": {
            "mock-1": {"provider": "mock", "model": "mock-1"},
            "lenient-mock": {"provider": "mock", "model": "mock-1", "params": "lenient"},
            "gpt-fake": {"provider": "fake", "model": "gpt-fake"},
        },
        "aliases": {"fast": "mock-1"},
    }
    running = Stack(workdir, overrides).start()
    yield running
    running.stop()


def client(stack: Stack, **token: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.edge_url, api_key=stack.token(**token), max_retries=0)


def post(stack: Stack, body: bytes | dict[str, Any], **headers: str) -> raw.RawResponse:
    headers.setdefault("x-api-key", stack.token())
    return raw.post(f"{stack.edge_url}/v1/messages", body, headers=headers)


def anthropic_error(response: raw.RawResponse) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"type", "error"} and body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}
    return body["error"]  # type: ignore[no-any-return]


# --- the mock provider -------------------------------------------------------------------


def test_non_streaming_through_mock_matches_chat(stack: Stack) -> None:
    response = client(stack).messages.with_raw_response.create(
        model="mock-1", max_tokens=200, messages=MESSAGES
    )
    message = response.parse()
    chat = raw.post(
        f"{stack.edge_url}/v1/chat/completions",
        {"model": "mock-1", "messages": MESSAGES},
        stack.token(),
    ).json()
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_")
    [block] = message.content
    assert block.type == "text" and block.text == chat["choices"][0]["message"]["content"]
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == chat["usage"]["prompt_tokens"]
    assert message.usage.output_tokens == chat["usage"]["completion_tokens"]
    assert response.headers["request-id"].startswith("req_")
    assert response.headers["x-interlock-provider"] == "mock"


def test_streaming_through_mock_equals_non_streaming(stack: Stack) -> None:
    sdk = client(stack)
    whole = sdk.messages.create(model="fast", max_tokens=200, messages=MESSAGES)
    with sdk.messages.stream(model="fast", max_tokens=200, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == whole.content[0].text  # type: ignore[union-attr]
    assert [(b.type, b.text) for b in final.content] == [("text", text)]  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == whole.usage.input_tokens > 0
    assert final.usage.output_tokens == whole.usage.output_tokens > 0


def test_max_tokens_stop_reason(stack: Stack) -> None:
    sdk = client(stack)
    message = sdk.messages.create(model="mock-1", max_tokens=3, messages=MESSAGES)
    assert message.stop_reason == "max_tokens"
    assert len(message.content[0].text.split()) == 3  # type: ignore[union-attr]
    events = list(sdk.messages.create(model="mock-1", max_tokens=3, messages=MESSAGES, stream=True))
    assert [e.type for e in events][-2:] == ["message_delta", "message_stop"]
    assert events[-2].delta.stop_reason == "max_tokens"  # type: ignore[union-attr]


def test_async_streaming(stack: Stack) -> None:
    async def run() -> anthropic.types.Message:
        sdk = anthropic.AsyncAnthropic(
            base_url=stack.edge_url, api_key=stack.token(), max_retries=0
        )
        async with sdk.messages.stream(model="mock-1", max_tokens=50, messages=MESSAGES) as s:
            return await s.get_final_message()

    final = asyncio.run(run())
    assert final.content and final.content[0].type == "text" and final.content[0].text


def test_strict_route_rejects_top_k_and_lenient_route_drops_it(stack: Stack) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        client(stack).messages.create(
            model="mock-1", max_tokens=20, messages=MESSAGES, extra_body={"top_k": 5}
        )
    assert info.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "top_k" in info.value.body["error"]["message"]  # type: ignore[index]
    response = client(stack).messages.with_raw_response.create(
        model="lenient-mock", max_tokens=20, messages=MESSAGES, extra_body={"top_k": 5}
    )
    assert response.parse().content
    assert response.headers["x-interlock-dropped-params"] == "top_k"


# --- an OpenAI-shaped upstream -----------------------------------------------------------


def test_translated_request_reaches_openai_upstream(stack: Stack, fake: FakeOpenAI) -> None:
    fake.reset()
    message = client(stack).messages.create(
        model="gpt-fake",
        max_tokens=77,
        system="Be terse.",
        messages=MESSAGES,
        stop_sequences=["STOP"],
        metadata={"user_id": "u-1"},
        extra_body={"temperature": 0.5},  # this SDK version no longer exposes sampling params
    )
    assert message.content[0].type == "text" and message.content[0].text == TEXT
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 7)
    [sent] = fake.received
    assert sent.headers["Authorization"] == "Bearer sk-test-upstream"
    assert sent.json == {
        "model": "gpt-fake",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Say hello"},
        ],
        "max_tokens": 77,
        "temperature": 0.5,
        "stop": ["STOP"],
        "user": "u-1",
    }


def test_streaming_from_openai_upstream(stack: Stack, fake: FakeOpenAI) -> None:
    fake.reset()
    with client(stack).messages.stream(model="fake/crlf", max_tokens=50, messages=MESSAGES) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == TEXT
    assert final.usage.output_tokens == 7 and final.usage.input_tokens == 12
    assert fake.received[-1].json["stream_options"] == {"include_usage": True}


TOOLS: list[Any] = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
    {
        "name": "get_stock_price",
        "input_schema": {"type": "object", "properties": {"ticker": {"type": "string"}}},
    },
]
EXPECTED_TOOL_USES = [
    ("call_weather_1", "get_weather", {"city": "Paris"}),
    ("call_stock_2", "get_stock_price", {"ticker": "ACME"}),
]


@pytest.mark.parametrize("streaming", [False, True])
def test_tool_use_round_trip_through_openai(
    stack: Stack, fake: FakeOpenAI, streaming: bool
) -> None:
    fake.reset()
    sdk = client(stack)
    ask: dict[str, Any] = {"model": "fake/tool-calls", "max_tokens": 100, "tools": TOOLS}
    if streaming:
        # The fake streams the two calls' argument fragments interleaved.
        with sdk.messages.stream(messages=MESSAGES, **ask) as stream:
            first = stream.get_final_message()
    else:
        first = sdk.messages.create(messages=MESSAGES, **ask)
    assert first.stop_reason == "tool_use"
    uses = [(b.id, b.name, b.input) for b in first.content if b.type == "tool_use"]
    assert uses == EXPECTED_TOOL_USES
    assert fake.received[-1].json["tools"][0] == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": TOOLS[0]["input_schema"],
        },
    }
    follow_up = [
        *MESSAGES,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_weather_1", "content": "18C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "call_stock_2",
                    "content": [{"type": "text", "text": "$42"}],
                },
            ],
        },
    ]
    second = sdk.messages.create(model="gpt-fake", max_tokens=100, tools=TOOLS, messages=follow_up)
    assert second.content[0].type == "text" and second.content[0].text == TEXT
    sent = fake.received[-1].json["messages"]
    assert sent[1]["role"] == "assistant" and sent[1]["content"] is None
    assert [
        (c["id"], c["function"]["name"], orjson.loads(c["function"]["arguments"]))
        for c in sent[1]["tool_calls"]
    ] == [(i, n, a) for i, n, a in EXPECTED_TOOL_USES]
    assert sent[2:] == [
        {"role": "tool", "tool_call_id": "call_weather_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_stock_2", "content": "$42"},
    ]


def test_upstream_errors_use_the_anthropic_envelope(stack: Stack) -> None:
    with pytest.raises(anthropic.RateLimitError) as limited:
        client(stack).messages.create(model="fake/quota", max_tokens=10, messages=MESSAGES)
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    with pytest.raises(anthropic.APIStatusError) as auth:
        client(stack).messages.create(model="fake/fail-401", max_tokens=10, messages=MESSAGES)
    assert auth.value.status_code == 502
    assert auth.value.body == {
        "type": "error",
        "error": {
            "type": "api_error",
            "message": "the upstream provider rejected the gateway's credentials",
        },
    }
    assert "sk-live" not in auth.value.response.text


@pytest.mark.parametrize("model", ["fake/cut-stream", "fake/error-after-200"])
def test_mid_stream_failure_raises_in_the_sdk(stack: Stack, model: str) -> None:
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as info:
        for event in client(stack).messages.create(
            model=model, max_tokens=10, messages=MESSAGES, stream=True
        ):
            seen.append(event.type)
    assert seen[:2] == ["message_start", "content_block_start"]  # the failure came after bytes
    assert info.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    last = post(stack, {"model": model, "max_tokens": 10, "messages": MESSAGES, "stream": True})
    frames = last.body.decode().strip().split("\n\n")
    assert frames[-1].startswith("event: error\ndata: ")
    assert "message_stop" not in last.body.decode()


# --- errors at the edge and in the core ---------------------------------------------------


def test_bad_token_is_an_authentication_error(stack: Stack) -> None:
    sdk = anthropic.Anthropic(base_url=stack.edge_url, api_key="not-a-jwt", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as info:
        sdk.messages.create(model="mock-1", max_tokens=10, messages=MESSAGES)
    assert info.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    missing = raw.post(
        f"{stack.edge_url}/v1/messages", {"model": "mock-1", "max_tokens": 5, "messages": MESSAGES}
    )
    assert missing.status == 401 and anthropic_error(missing)["type"] == "authentication_error"


def test_bearer_authorization_also_works(stack: Stack) -> None:
    response = raw.post(
        f"{stack.edge_url}/v1/messages",
        {"model": "mock-1", "max_tokens": 5, "messages": MESSAGES},
        stack.token(),
    )
    assert response.status == 200 and response.json()["type"] == "message"


def test_model_not_allowed_is_a_permission_error(stack: Stack) -> None:
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        client(stack, models=["gpt-*"]).messages.create(
            model="mock-1", max_tokens=10, messages=MESSAGES
        )
    assert info.value.body["error"]["type"] == "permission_error"  # type: ignore[index]


def test_unknown_model_is_not_found(stack: Stack) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        client(stack).messages.create(model="no-such-model", max_tokens=10, messages=MESSAGES)
    assert info.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


def test_bad_json_and_oversized_bodies(stack: Stack) -> None:
    broken = post(stack, b"{not json")
    assert broken.status == 400 and "not valid JSON" in anthropic_error(broken)["message"]
    huge = orjson.dumps(
        {
            "model": "mock-1",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "x" * (17 * 1024 * 1024)}],
        }
    )
    too_large = post(stack, huge)
    assert too_large.status == 413 and anthropic_error(too_large)["type"] == "request_too_large"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "mock-1", "messages": MESSAGES}, "max_tokens"),
        ({"model": "mock-1", "max_tokens": 0, "messages": MESSAGES}, "max_tokens"),
        ({"model": "mock-1", "max_tokens": 5, "messages": []}, "messages"),
        (
            {"model": "mock-1", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
            "messages[0].role",
        ),
        ({"model": "mock-1", "max_tokens": 5, "messages": MESSAGES, "stream": "yes"}, "stream"),
        ({"model": "mock-1", "max_tokens": 5, "messages": MESSAGES, "system": 1}, "system"),
        ({"max_tokens": 5, "messages": MESSAGES}, "model"),
    ],
)
def test_validation_errors_name_the_field(stack: Stack, body: dict[str, Any], field: str) -> None:
    response = post(stack, body)
    error = anthropic_error(response)
    assert response.status == 400 and error["type"] == "invalid_request_error"
    assert field in error["message"]


def test_core_without_hop_credential_answers_in_the_anthropic_envelope(stack: Stack) -> None:
    body = {"model": "mock-1", "max_tokens": 5, "messages": MESSAGES}
    response = raw.post(f"{stack.core_url}/v1/messages", body, headers={"x-api-key": stack.token()})
    assert response.status == 401
    assert anthropic_error(response)["type"] == "authentication_error"
    forged = {
        "x-interlock-tenant": "victim",
        "x-interlock-models": "*",
        hop.REQUEST_ID_HEADER: "req_x",
        hop.HOP_HEADER: "v2.e30.forged",
    }
    assert raw.post(f"{stack.core_url}/v1/messages", body, headers=forged).status == 401


def test_unknown_path_and_method_use_the_anthropic_envelope(stack: Stack) -> None:
    missing = raw.request("GET", f"{stack.edge_url}/v1/messages/nope")
    assert missing.status == 404 and anthropic_error(missing)["type"] == "not_found_error"
    wrong_method = raw.request("GET", f"{stack.edge_url}/v1/messages")
    assert wrong_method.status == 405 and anthropic_error(wrong_method)["type"]


def test_no_prompt_content_in_logs(stack: Stack) -> None:
    marker = "PROMPT-MARKER-a91e"
    response = client(stack).messages.with_raw_response.create(
        model="gpt-fake", max_tokens=10, messages=[{"role": "user", "content": marker}]
    )
    logs = stack.wait_for_log("interlock.usage", response.headers["x-request-id"])
    assert marker not in logs and TEXT not in logs
