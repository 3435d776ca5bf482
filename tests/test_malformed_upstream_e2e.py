"""Upstream data that is not the wire format, through the real edge and core (issue 10 items 3, 7).

`"choices": 5` in a chunk used to raise a TypeError out of the stream parser: a 500 or a broken
stream, a usage line recorded as `ok`, and a broken connection for the edge's other requests.
Now any such data is an invalid upstream response: before the first byte it fails over (the
fallback answers), after it the stream ends with an error event in the API's format; a usage
line is always written with the failure as its outcome. The fault fake (tests/support/
fake_faults.py) sends `garbage` (not JSON) and `malformed` (JSON of the wrong shape), before the
first chunk with `/first`, and `bigevent` sends one event over the core's event cap.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic
import openai
import orjson
import pytest

from tests.support import raw
from tests.support.fake_faults import TEXT, FakeFaults
from tests.support.fault_stack import ANY_MODEL, fault_stack, to_faults
from tests.support.logs import usage_entries
from tests.support.stack import Stack

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
KINDS = ("malformed", "garbage")
STREAMED = "Hello world"  # what the fault fake streams (its complete answers say TEXT)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, faults: FakeFaults) -> Iterator[Stack]:
    resilience = {
        "max_retries": 0,
        "breaker_min_requests": 1000,  # these tests count failures, not circuits
        "max_event_bytes": "1MiB",
    }
    models = {
        f"{kind}-fallback": {"targets": [to_faults(f"fault/{kind}/first"), to_faults("ok")]}
        for kind in KINDS
    }
    workdir = tmp_path_factory.mktemp("malformed")
    with fault_stack(workdir, faults, resilience, models, provider=ANY_MODEL) as running:
        yield running


def _tenant() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def _openai(stack: Stack, tenant: str) -> openai.OpenAI:
    token = stack.token(tenant=tenant)
    return openai.OpenAI(base_url=f"{stack.edge_url}/v1", api_key=token, max_retries=0)


def _anthropic(stack: Stack, tenant: str) -> anthropic.Anthropic:
    token = stack.token(tenant=tenant)
    return anthropic.Anthropic(base_url=stack.edge_url, api_key=token, max_retries=0)


def chat_text(stack: Stack, tenant: str, model: str, stream: bool) -> str:
    sdk = _openai(stack, tenant)
    if not stream:
        answer = sdk.chat.completions.create(model=model, messages=MESSAGES)
        return answer.choices[0].message.content or ""
    chunks = sdk.chat.completions.create(model=model, messages=MESSAGES, stream=True)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def messages_text(stack: Stack, tenant: str, model: str, stream: bool) -> str:
    sdk = _anthropic(stack, tenant)
    if not stream:
        message = sdk.messages.create(model=model, max_tokens=50, messages=MESSAGES)
        return "".join(b.text for b in message.content if b.type == "text")
    events = sdk.messages.create(model=model, max_tokens=50, messages=MESSAGES, stream=True)
    return "".join(
        e.delta.text
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )


def usage_line(stack: Stack, tenant: str) -> dict[str, Any]:
    logs = stack.wait_for_log("interlock.usage", f'"tenant":"{tenant}"')
    entries = [entry for entry in usage_entries(logs) if entry["tenant"] == tenant]
    assert len(entries) == 1
    return entries[0]


ASK = {"chat": chat_text, "messages": messages_text}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("api", ["chat", "messages"])
@pytest.mark.parametrize("stream", [False, True])
def test_the_fallback_answers_when_the_fault_is_before_the_first_byte(
    stack: Stack, kind: str, api: str, stream: bool
) -> None:
    tenant = _tenant()
    assert ASK[api](stack, tenant, f"{kind}-fallback", stream) == (STREAMED if stream else TEXT)
    line = usage_line(stack, tenant)
    assert (line["outcome"], line["failovers"], line["upstream_model"]) == ("ok", 1, "ok")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("api", ["chat", "messages"])
def test_without_a_fallback_a_complete_answer_is_a_502_envelope(
    stack: Stack, kind: str, api: str
) -> None:
    tenant = _tenant()
    error = openai.APIStatusError if api == "chat" else anthropic.APIStatusError
    with pytest.raises(error) as info:
        ASK[api](stack, tenant, f"faults/fault/{kind}", False)
    assert info.value.status_code == 502
    body: Any = info.value.body
    if api == "chat":
        assert body["type"] == "upstream_error" and "upstream returned" in body["message"]
    else:
        assert body["error"]["type"] == "api_error"
    assert usage_line(stack, tenant)["outcome"] == "transient"


def _stream_frames(stack: Stack, tenant: str, api: str, model: str) -> list[bytes]:
    """The raw SSE frames a client receives (the SDKs hide an error event's details)."""
    body: dict[str, Any] = {"model": model, "messages": MESSAGES, "stream": True}
    path = "/v1/chat/completions"
    if api == "messages":
        body["max_tokens"] = 50
        path = "/v1/messages"
    response = raw.post(f"{stack.edge_url}{path}", body, stack.token(tenant=tenant))
    assert response.status == 200
    return response.body.strip().split(b"\n\n")


def _error_of(frame: bytes, api: str) -> dict[str, Any]:
    data = frame.split(b"data: ", 1)[1]
    payload: dict[str, Any] = orjson.loads(data)
    if api == "messages":
        assert frame.startswith(b"event: error\n") and payload["type"] == "error"
    error: dict[str, Any] = payload["error"]
    return error


@pytest.mark.parametrize("fault", ["fault/malformed", "fault/garbage", "fault/malformed/first"])
@pytest.mark.parametrize("api", ["chat", "messages"])
def test_after_the_first_byte_the_stream_ends_with_an_error_event(
    stack: Stack, faults: FakeFaults, api: str, fault: str
) -> None:
    """Mid-stream faults, even with a fallback configured (the first byte is out); `/first`
    without a fallback fails before any byte: a 502 envelope, checked above for complete
    answers, and here for streams."""
    tenant = _tenant()
    if fault.endswith("/first"):
        body: dict[str, Any] = {"model": f"faults/{fault}", "messages": MESSAGES, "stream": True}
        if api == "messages":
            body["max_tokens"] = 50
        path = "/v1/chat/completions" if api == "chat" else "/v1/messages"
        response = raw.post(f"{stack.edge_url}{path}", body, stack.token(tenant=tenant))
        assert response.status == 502
        assert usage_line(stack, tenant)["outcome"] == "transient"
        return
    frames = _stream_frames(stack, tenant, api, f"faults/{fault}")
    assert b"Hello" in b"".join(frames)  # what came before the fault reached the client
    error = _error_of(frames[-1], api)
    assert "upstream returned" in error["message"]
    assert b"[DONE]" not in b"".join(frames) and b"message_stop" not in b"".join(frames)
    line = usage_line(stack, tenant)
    assert line["outcome"] == "cut:transient" and line["completion_tokens"] is not None


def test_the_sdks_see_a_clean_error_mid_stream(stack: Stack) -> None:
    with pytest.raises(openai.APIError) as chat:
        chat_text(stack, _tenant(), "faults/fault/malformed", True)
    assert type(chat.value) is openai.APIError  # an error event, not a dropped connection
    with pytest.raises(anthropic.APIStatusError) as messages:
        messages_text(stack, _tenant(), "faults/fault/malformed", True)
    assert messages.value.body["error"]["type"] == "api_error"  # type: ignore[index]


@pytest.mark.parametrize("api", ["chat", "messages"])
def test_an_event_over_the_cap_ends_the_stream_with_an_error_event(stack: Stack, api: str) -> None:
    tenant = _tenant()
    frames = _stream_frames(stack, tenant, api, "faults/fault/bigevent/2")
    assert "larger than 1048576 bytes" in _error_of(frames[-1], api)["message"]
    assert usage_line(stack, tenant)["outcome"] == "cut:transient"


def test_good_requests_beside_bad_ones_keep_working(stack: Stack) -> None:
    """Bad streams and answers interleaved with good ones on the same edge and its pooled
    connections to the core: every good one completes, and nothing crashed."""

    def bad(i: int) -> None:
        api, kind = ("chat", "messages")[i % 2], KINDS[i // 2 % 2]
        with contextlib.suppress(openai.APIError, anthropic.APIError):
            ASK[api](stack, _tenant(), f"faults/fault/{kind}", i % 3 != 0)

    def good(i: int) -> str:
        api = ("chat", "messages")[i % 2]
        return ASK[api](stack, _tenant(), "faults/ok", i % 3 != 0)

    with ThreadPoolExecutor(8) as pool:
        bads = [pool.submit(bad, i) for i in range(24)]
        goods = [pool.submit(good, i) for i in range(24)]
        expected = [STREAMED if i % 3 != 0 else TEXT for i in range(24)]
        assert [f.result() for f in goods] == expected
        for f in bads:
            f.result()
    # Every bad answer was handled, none crashed a request in the core (a crash would log a
    # traceback, answer 500 or break the stream; the edge then hides it behind a retry or its
    # own "connection lost" event).
    assert "Traceback" not in stack.read_logs()
