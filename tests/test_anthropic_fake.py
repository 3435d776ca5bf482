"""The fake Anthropic server checked against the official SDK's own types and client.

If the fake drifted from the real wire format, the adapter tests built on it would prove
nothing; here the SDK is the judge of every body, event and error the fake produces.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import orjson
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from pydantic import TypeAdapter

from tests.support import raw
from tests.support.fake_anthropic import (
    CACHE_CREATION,
    CACHE_READ,
    SIGNATURE,
    TEXT,
    TOOL_TEXT,
    TOOL_USES,
    FakeAnthropic,
)

EVENT = TypeAdapter(RawMessageStreamEvent)
HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}
HELLO = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic().start()
    yield server
    server.stop()


def sdk(fake: FakeAnthropic) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fake.url, api_key="sk-ant-test", max_retries=0)


def post(
    fake: FakeAnthropic, body: dict[str, Any], headers: dict[str, str] | None = None
) -> raw.RawResponse:
    return raw.request(
        "POST", f"{fake.url}/v1/messages", body, HEADERS if headers is None else headers
    )


def sse_events(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for frame in data.decode().split("\n\n"):
        if not frame.strip():
            continue
        lines = dict(line.split(": ", 1) for line in frame.split("\n"))
        events.append((lines["event"], orjson.loads(lines["data"])))
    return events


SCRIPTS: list[tuple[str, dict[str, Any]]] = [
    ("claude-fake", {}),
    ("echo", {}),
    ("tool-use", {}),
    ("thinking", {}),
    ("cache", {}),
    ("claude-fake", {"max_tokens": 3}),
    ("claude-fake", {"thinking": {"type": "enabled", "budget_tokens": 1024}, "max_tokens": 2048}),
]


@pytest.mark.parametrize(("model", "extra"), SCRIPTS)
def test_messages_validate_against_sdk_types(
    fake: FakeAnthropic, model: str, extra: dict[str, Any]
) -> None:
    body = {"model": model, "max_tokens": 100, "messages": HELLO, **extra}
    response = post(fake, body)
    assert response.status == 200
    message = Message.model_validate(response.json())
    assert message.model.startswith(model)
    stream = post(fake, {**body, "stream": True})
    assert stream.status == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    events = sse_events(stream.body)
    assert events[0][0] == "message_start" and events[-1][0] == "message_stop"
    assert ("ping", {"type": "ping"}) in events
    for name, payload in events:
        assert payload["type"] == name
        if name != "ping":
            EVENT.validate_python(payload)


@pytest.mark.parametrize(("model", "extra"), SCRIPTS)
def test_sdk_stream_accumulates_to_the_same_message(
    fake: FakeAnthropic, model: str, extra: dict[str, Any]
) -> None:
    params: dict[str, Any] = {"model": model, "max_tokens": 100, "messages": HELLO, **extra}
    whole = sdk(fake).messages.create(**params)
    with sdk(fake).messages.stream(**params) as stream:
        final = stream.get_final_message()
    assert final.model_dump() == whole.model_dump()


def test_scripts_say_what_the_docstring_promises(fake: FakeAnthropic) -> None:
    client = sdk(fake)
    plain = client.messages.create(model="claude-fake", max_tokens=100, messages=HELLO)
    assert [b.type for b in plain.content] == ["text"]
    assert plain.content[0].text == TEXT
    assert plain.stop_reason == "end_turn"

    echo = client.messages.create(model="echo", max_tokens=100, messages=HELLO)
    assert echo.content[0].text == "Say hello"

    tools = client.messages.create(model="tool-use", max_tokens=100, messages=HELLO)
    assert tools.stop_reason == "tool_use"
    assert [b.type for b in tools.content] == ["text", "tool_use", "tool_use"]
    assert tools.content[0].text == TOOL_TEXT
    assert [(b.id, b.name, b.input) for b in tools.content[1:]] == [
        (u["id"], u["name"], u["input"]) for u in TOOL_USES
    ]

    thinking = client.messages.create(model="thinking", max_tokens=100, messages=HELLO)
    assert [b.type for b in thinking.content] == ["thinking", "text"]
    assert thinking.content[0].signature == SIGNATURE

    cache = client.messages.create(model="cache", max_tokens=100, messages=HELLO)
    assert cache.usage.cache_read_input_tokens == CACHE_READ
    assert cache.usage.cache_creation_input_tokens == CACHE_CREATION

    short = client.messages.create(model="claude-fake", max_tokens=2, messages=HELLO)
    assert short.stop_reason == "max_tokens"
    assert short.content[0].text == " ".join(TEXT.split(" ")[:2])


def test_tool_round_trip_answers_with_the_results(fake: FakeAnthropic) -> None:
    messages: list[dict[str, Any]] = [
        *HELLO,
        {"role": "assistant", "content": [{"type": "tool_use", **u} for u in TOOL_USES]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": TOOL_USES[0]["id"], "content": "Sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": TOOL_USES[1]["id"],
                    "content": [{"type": "text", "text": "42 USD"}],
                },
            ],
        },
    ]
    answer = sdk(fake).messages.create(model="tool-use", max_tokens=100, messages=messages)
    assert answer.content[0].text == "Tool results: Sunny | 42 USD"
    missing = post(
        fake, {"model": "tool-use", "max_tokens": 100, "messages": [*messages[:2], HELLO[0]]}
    )
    assert missing.status == 400
    assert "tool_result" in missing.json()["error"]["message"]


@pytest.mark.parametrize(
    ("model", "status", "error_type", "exception"),
    [
        ("rate-limit", 429, "rate_limit_error", anthropic.RateLimitError),
        ("overloaded", 529, "overloaded_error", anthropic.OverloadedError),
        ("fail-500", 500, "api_error", anthropic.InternalServerError),
        ("fail-401", 401, "authentication_error", anthropic.AuthenticationError),
        ("credit", 400, "invalid_request_error", anthropic.BadRequestError),
        ("context", 400, "invalid_request_error", anthropic.BadRequestError),
        ("too-large", 413, "request_too_large", anthropic.APIStatusError),
    ],
)
def test_scripted_errors(
    fake: FakeAnthropic, model: str, status: int, error_type: str, exception: type[Exception]
) -> None:
    response = post(fake, {"model": model, "max_tokens": 10, "messages": HELLO})
    assert response.status == status
    payload = response.json()
    assert payload["type"] == "error" and payload["error"]["type"] == error_type
    if error_type != "request_too_large":  # documented by Anthropic, absent from SDK types
        ErrorResponse.model_validate(payload)
    with pytest.raises(exception):
        sdk(fake).messages.create(model=model, max_tokens=10, messages=HELLO)
    if model == "rate-limit":
        assert response.headers["retry-after"] == "7"


def test_fail_429_then_ok(fake: FakeAnthropic) -> None:
    fake.reset()
    first = post(fake, {"model": "fail-429-then-ok", "max_tokens": 10, "messages": HELLO})
    second = post(fake, {"model": "fail-429-then-ok", "max_tokens": 10, "messages": HELLO})
    assert (first.status, first.headers["retry-after"], second.status) == (429, "0", 200)


def test_headers_and_required_fields_are_checked(fake: FakeAnthropic) -> None:
    body = {"model": "claude-fake", "max_tokens": 10, "messages": HELLO}
    no_key = post(fake, body, {"anthropic-version": "2023-06-01"})
    assert no_key.status == 401
    assert no_key.json()["error"]["type"] == "authentication_error"
    no_version = post(fake, body, {"x-api-key": "k"})
    assert no_version.status == 400
    assert "anthropic-version" in no_version.json()["error"]["message"]
    no_max = post(fake, {"model": "claude-fake", "messages": HELLO})
    assert no_max.status == 400 and "max_tokens" in no_max.json()["error"]["message"]
    system_role = post(fake, {**body, "messages": [{"role": "system", "content": "x"}]})
    assert system_role.status == 400
    empty_text = post(
        fake, {**body, "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]}
    )
    assert empty_text.status == 400


def test_requests_are_recorded(fake: FakeAnthropic) -> None:
    fake.reset()
    sdk(fake).messages.create(model="echo", max_tokens=10, messages=HELLO)
    [sent] = fake.for_model("echo")
    assert sent.path == "/v1/messages"
    # SDK 2.x authenticates with a bearer header; the fake accepts it as well as x-api-key.
    assert sent.headers["Authorization"] == "Bearer sk-ant-test"
    assert sent.headers["anthropic-version"]
    assert sent.json["messages"] == HELLO


def drain(fake: FakeAnthropic, model: str) -> None:
    with sdk(fake).messages.stream(model=model, max_tokens=10, messages=HELLO) as stream:
        stream.get_final_message()


def test_error_after_200_and_cut_stream(fake: FakeAnthropic) -> None:
    with pytest.raises(anthropic.APIStatusError) as info:
        drain(fake, "error-after-200")
    assert "overloaded_error" in str(info.value)
    # A body cut mid-chunk is a transport failure, never a clean end: SDKs before 2.17 let the
    # transport's error through; 2.17 wraps it as a connection error.
    with pytest.raises((httpx2.RemoteProtocolError, anthropic.APIConnectionError)):
        drain(fake, "cut-stream")
    body = {"model": "error-after-200", "max_tokens": 10, "messages": HELLO, "stream": True}
    events = sse_events(post(fake, body).body)
    error = {"details": None, "type": "overloaded_error", "message": "Overloaded"}
    assert events[-1] == ("error", {"type": "error", "error": error})
