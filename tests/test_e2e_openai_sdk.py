"""The official OpenAI SDK -> edge -> core -> provider, over real loopback sockets."""

from __future__ import annotations

import asyncio

import openai
import pytest

from tests.support import raw
from tests.support.fake_openai import TEXT, FakeOpenAI
from tests.support.sdk import async_client
from tests.support.stack import Stack


def client(stack: Stack, **token: object) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{stack.edge_url}/v1", api_key=stack.token(**token), max_retries=0
    )  # type: ignore[arg-type]


MESSAGES = [{"role": "user", "content": "Say hello"}]


def test_sync_non_streaming_through_fake_upstream(stack: Stack, fake_openai: FakeOpenAI) -> None:
    fake_openai.reset()
    raw = client(stack).chat.completions.with_raw_response.create(
        model="gpt-fake", messages=MESSAGES
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == TEXT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens == 19
    assert raw.headers["x-interlock-provider"] == "fake"
    assert raw.headers["x-request-id"].startswith("req_")
    assert "server" not in raw.headers  # no software named for an attacker to look up
    [sent] = fake_openai.received
    # The upstream gets the operator's key, never the tenant's token.
    assert sent.headers["Authorization"] == "Bearer sk-test-upstream"
    assert sent.json["model"] == "gpt-fake"
    assert "stream_options" not in sent.json


def test_sync_non_streaming_through_mock(stack: Stack) -> None:
    completion = client(stack).chat.completions.create(model="mock-1", messages=MESSAGES)
    again = client(stack).chat.completions.create(model="fast", messages=MESSAGES)  # alias
    assert completion.choices[0].message.content
    assert (
        completion.choices[0].message.content == again.choices[0].message.content
    )  # deterministic
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    assert (
        completion.usage.total_tokens
        == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_mock_honours_max_tokens(stack: Stack) -> None:
    completion = client(stack).chat.completions.create(
        model="mock-1", messages=MESSAGES, max_tokens=3
    )
    assert completion.choices[0].finish_reason == "length"
    assert len((completion.choices[0].message.content or "").split()) == 3


@pytest.mark.parametrize("model", ["gpt-fake", "mock-1", "fake/crlf"])
def test_async_streaming(stack: Stack, fake_openai: FakeOpenAI, model: str) -> None:
    fake_openai.reset()

    async def run() -> tuple[str, list[object]]:
        chunks = []
        text = ""
        stream = await async_client(stack).chat.completions.create(
            model=model, messages=MESSAGES, stream=True
        )
        async for chunk in stream:
            chunks.append(chunk)
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
        return text, chunks

    text, chunks = asyncio.run(run())
    assert text
    if model != "mock-1":
        assert text == TEXT
        # Trap 1: usage is always requested upstream...
        assert fake_openai.received[-1].json["stream_options"] == {"include_usage": True}
    # ...but shown to the client only if it asked.
    assert all(c.usage is None for c in chunks)  # type: ignore[attr-defined]
    assert all(c.choices for c in chunks)  # type: ignore[attr-defined]


@pytest.mark.parametrize("model", ["gpt-fake", "mock-1"])
def test_streaming_include_usage(stack: Stack, model: str) -> None:
    async def run() -> list[object]:
        stream = await async_client(stack).chat.completions.create(
            model=model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        return [chunk async for chunk in stream]

    chunks = asyncio.run(run())
    last = chunks[-1]
    assert last.choices == []  # type: ignore[attr-defined]
    assert last.usage is not None and last.usage.total_tokens > 0  # type: ignore[attr-defined]
    assert [c for c in chunks if c.usage is not None] == [last]  # type: ignore[attr-defined]


def test_streamed_parallel_tool_calls_reassemble(stack: Stack) -> None:
    stream = client(stack).chat.completions.create(
        model="fake/tool-calls", messages=MESSAGES, stream=True
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for delta in choice.delta.tool_calls or []:
            entry = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += delta.id or ""
            if delta.function:
                entry["name"] += delta.function.name or ""
                entry["arguments"] += delta.function.arguments or ""
    assert finish == "tool_calls"
    assert calls == {
        0: {"id": "call_weather_1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        1: {"id": "call_stock_2", "name": "get_stock_price", "arguments": '{"ticker": "ACME"}'},
    }


def test_models_lists_only_what_the_token_allows(stack: Stack) -> None:
    everything = {m.id for m in client(stack).models.list()}
    assert {"mock-1", "gpt-fake", "fast"} <= everything
    limited = {m.id for m in client(stack, models=["mock-*"]).models.list()}
    assert limited == {"mock-1"}


def test_failover_before_first_byte(stack: Stack, fake_openai: FakeOpenAI) -> None:
    fake_openai.reset()
    raw = client(stack).chat.completions.with_raw_response.create(
        model="resilient", messages=MESSAGES
    )
    assert raw.parse().choices[0].message.content == TEXT
    assert raw.headers["x-interlock-attempts"] == "3"  # connection refused, 500, then served
    assert [r.json["model"] for r in fake_openai.received] == ["fail-500", "gpt-fake"]

    stream = client(stack).chat.completions.create(
        model="resilient", messages=MESSAGES, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == TEXT


def test_upstream_error_without_fallback(stack: Stack) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        client(stack).chat.completions.create(model="no-fallback", messages=MESSAGES)
    assert info.value.status_code == 502
    assert info.value.body["type"] == "upstream_error"  # type: ignore[index]
    # The only target was tried, then retried twice with backoff; the failure says so.
    assert info.value.response.headers["x-interlock-attempts"] == "3"


def test_upstream_client_error_is_relayed_with_its_param(stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client(stack).chat.completions.create(model="fake/bad-param", messages=MESSAGES)
    assert info.value.body["param"] == "temperature"  # type: ignore[index]


def test_upstream_auth_failure_never_leaks_key_text(stack: Stack) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client(stack).chat.completions.create(model="fake/fail-401", messages=MESSAGES)
    assert info.value.status_code == 502  # the operator's credentials, not the tenant's
    assert "sk-live" not in info.value.response.text


def test_upstream_retry_after_reaches_the_client(stack: Stack) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        client(stack).chat.completions.create(model="fake/always-429", messages=MESSAGES)
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]


def test_rate_limited_upstream_is_429_with_envelope(stack: Stack) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        client(stack).chat.completions.create(model="fake/quota", messages=MESSAGES)
    message = info.value.body["message"]  # type: ignore[index]
    assert "quota" in message and message != "You exceeded your current quota."


@pytest.mark.parametrize("model", ["fake/error-after-200", "fake/cut-stream"])
def test_stream_failure_after_first_byte_ends_with_error_event(stack: Stack, model: str) -> None:
    stream = client(stack).chat.completions.create(model=model, messages=MESSAGES, stream=True)
    received = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            received.append(chunk)
    assert received  # the first chunks arrived before the failure


def test_stream_error_event_on_the_wire(stack: Stack) -> None:
    body = {"model": "fake/cut-stream", "messages": MESSAGES, "stream": True}
    response = raw.post(f"{stack.edge_url}/v1/chat/completions", body, stack.token())
    text = response.body.decode()
    assert response.status == 200
    assert "[DONE]" not in text
    last = text.strip().split("\n\n")[-1]
    assert last.startswith('data: {"error":')
    assert (
        raw.RawResponse(200, {}, last[len("data: ") :].encode()).json()["error"]["type"]
        == "upstream_error"
    )


def test_no_prompt_content_in_logs(stack: Stack) -> None:
    marker = "PROMPT-MARKER-7c1f"
    raw_response = client(stack).chat.completions.with_raw_response.create(
        model="gpt-fake", messages=[{"role": "user", "content": marker}]
    )
    # accounting did log the request...
    logs = stack.wait_for_log("interlock.usage", raw_response.headers["x-request-id"])
    assert marker not in logs  # ...without its content
    assert TEXT not in logs
