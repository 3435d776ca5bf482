"""POST /v1/messages to Anthropic targets: the client's request and the upstream's answer pass
through unchanged (only `model` is rewritten), over real sockets to tests/support/fake_anthropic.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest

from core.api.messages.passthrough import PassthroughStream, RelayedError, upstream_error
from core.providers.adapters.base import ProviderError, Target
from core.providers.transport import UpstreamBody
from core.resilience.retry import FAIL_OVER as FAILOVER_CLASSES
from core.spend.cost import Cost
from core.wire.sse import SSEDecoder
from shared.config import ProviderConfig
from shared.h1 import Disconnected
from tests.support import raw
from tests.support.fake_anthropic import FakeAnthropic, message, stream_events
from tests.support.fake_openai import TEXT as OPENAI_TEXT
from tests.support.fake_openai import FakeOpenAI
from tests.support.providers import provider_of
from tests.support.sdk import anthropic_client as client
from tests.support.stack import Stack

MESSAGES: list[Any] = [{"role": "user", "content": "Say hello"}]
OPERATOR_KEY = "sk-ant-operator-key"
CLAUDE = ProviderConfig("claude", "anthropic", None, (OPERATOR_KEY,), {}, None, True)
TARGET = Target(provider_of(CLAUDE), "claude-x", CLAUDE.api_keys[0])


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeAnthropic, FakeOpenAI]]:
    claude, openai_like = FakeAnthropic(), FakeOpenAI()
    claude.start()
    openai_like.start()
    yield claude, openai_like
    claude.stop()
    openai_like.stop()


@pytest.fixture(scope="module")
def claude(fakes: tuple[FakeAnthropic, FakeOpenAI]) -> FakeAnthropic:
    return fakes[0]


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, fakes: tuple[FakeAnthropic, FakeOpenAI]
) -> Iterator[Stack]:
    claude, openai_like = fakes
    workdir: Path = tmp_path_factory.mktemp("messages-passthrough")
    overrides = {
        "providers": {
            "mock": {"kind": "mock"},
            "claude": {
                "kind": "anthropic",
                "base_url": claude.url,
                "api_key": OPERATOR_KEY,
                "allow_any_model": True,
            },
            "fake": {"kind": "openai", "base_url": openai_like.base_url, "api_key": "sk-o"},
        },
        # Sonnet-like prices for the fake's `cache` script (passthrough streams carry the cost).
        "prices": {
            "models": {
                "claude/cache": {
                    "input": 3,
                    "output": 15,
                    "cache_read": "0.30",
                    "cache_write_5m": "3.75",
                    "source": "test contract",
                }
            }
        },
        "models": {
            "mock-1": {"provider": "mock", "model": "mock-1"},
            "claude-fake": {"provider": "claude", "model": "claude-test"},
            "claude-same": {"provider": "claude", "model": "claude-same"},
            "mixed": {
                "targets": [
                    {"provider": "claude", "model": "overloaded"},
                    {"provider": "fake", "model": "gpt-fake"},
                ]
            },
            "mixed-reverse": {
                "targets": [
                    {"provider": "fake", "model": "fail-500"},
                    {"provider": "claude", "model": "claude-test"},
                ]
            },
            "claude-retry": {
                "targets": [
                    {"provider": "claude", "model": "rate-limit"},
                    {"provider": "claude", "model": "claude-test"},
                ]
            },
        },
    }
    # Passthrough runs through the Dispatcher: fast retries keep error tests quick.
    overrides["core"] = {
        "resilience": {"retry_after_cap": "10ms", "backoff_base": "1ms", "backoff_cap": "5ms"}
    }
    running = Stack(workdir, overrides).start()
    yield running
    running.stop()


def post(stack: Stack, body: bytes | dict[str, Any], **headers: str) -> raw.RawResponse:
    merged = {"x-api-key": stack.token(), "anthropic-version": "2023-06-01", **headers}
    return raw.post(f"{stack.edge_url}/v1/messages", body, headers=merged)


def events(body: bytes) -> list[tuple[str | None, Any]]:
    decoder = SSEDecoder()
    return [(e.event, orjson.loads(e.data)) for e in decoder.feed(body) + decoder.finish()]


def usage_line(stack: Stack, request_id: str) -> dict[str, Any]:
    """The core's accounting line for a request; a stream's is written as it ends, so poll."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in stack.read_logs().splitlines():
            if "interlock.usage" in line and request_id in line:
                return orjson.loads(line[line.index("{") :])  # type: ignore[no-any-return]
        time.sleep(0.02)
    raise AssertionError(f"no usage line for {request_id}")


BODY: dict[str, Any] = {
    "model": "claude-fake",
    "max_tokens": 50,
    # Long enough to be cached (a mark on a shorter prefix is removed: core.wire.prompt_cache).
    "system": [
        {"type": "text", "text": "Be terse. " * 320, "cache_control": {"type": "ephemeral"}}
    ],
    "messages": MESSAGES,
    "tools": [{"name": "noop", "input_schema": {"type": "object"}}],
    "tool_choice": {"type": "auto"},
    "top_k": 3,
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "metadata": {"user_id": "u-7"},
    "container": "untranslatable-but-anthropic-knows-it",
}


def test_body_is_forwarded_with_only_the_model_rewritten(
    stack: Stack, claude: FakeAnthropic
) -> None:
    claude.reset()
    token = stack.token()
    response = post(
        stack,
        BODY,
        **{"x-api-key": token, "anthropic-version": "2023-01-01", "anthropic-beta": "b1"},
    )
    assert response.status == 200
    [sent] = claude.received
    assert sent.body == orjson.dumps({**BODY, "model": "claude-test"})  # same bytes, same order
    assert sent.headers["x-api-key"] == OPERATOR_KEY
    assert sent.headers["anthropic-version"] == "2023-01-01"  # the client's version wins
    assert sent.headers["anthropic-beta"] == "b1"
    assert token not in str(sent.headers)
    assert response.json() == message("claude-test", sent.json)  # the answer, untouched
    assert response.headers["x-interlock-provider"] == "claude"
    assert response.headers["x-interlock-model"] == "claude-test"


def test_body_bytes_are_untouched_when_the_model_id_matches(
    stack: Stack, claude: FakeAnthropic
) -> None:
    claude.reset()
    body = (
        b'{"model":"claude-same",  "max_tokens": 5,\n "messages":[{"role":"user","content":"hi"}]}'
    )
    assert post(stack, body).status == 200
    assert claude.received[0].body == body


def test_sdk_non_streaming_with_tools(stack: Stack) -> None:
    result = client(stack).messages.create(
        model="claude/tool-use",
        max_tokens=100,
        messages=MESSAGES,
        tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
    )
    assert [b.type for b in result.content] == ["text", "tool_use", "tool_use"]
    assert result.stop_reason == "tool_use"
    assert result.content[1].input == {"city": "Paris"}  # type: ignore[union-attr]


def test_stream_events_are_relayed_unchanged(stack: Stack, claude: FakeAnthropic) -> None:
    claude.reset()
    response = post(stack, {**BODY, "model": "claude/tool-use", "stream": True})
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    expected = stream_events(message("tool-use", claude.received[0].json))
    got = events(response.body)
    # The one addition: message_delta's usage carries the cost (an unpriced model: the reserve).
    [delta] = [payload for name, payload in got if name == "message_delta"]
    assert delta["usage"].pop("interlock_cost") == "0.010000"
    assert got == expected  # incl. ping, in order, nothing else added or lost


def test_sdk_streaming_equals_non_streaming(stack: Stack) -> None:
    sdk = client(stack)
    whole = sdk.messages.create(model="claude/thinking", max_tokens=100, messages=MESSAGES)
    with sdk.messages.stream(model="claude/thinking", max_tokens=100, messages=MESSAGES) as s:
        final = s.get_final_message()
    assert [b.model_dump(exclude={"parsed_output"}) for b in final.content] == [
        b.model_dump() for b in whole.content
    ]
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.stop_reason == whole.stop_reason == "end_turn"


@pytest.mark.parametrize("streaming", [False, True])
def test_usage_with_cache_tokens_is_accounted(stack: Stack, streaming: bool) -> None:
    response = post(stack, {**BODY, "model": "claude/cache", "stream": streaming})
    assert response.status == 200
    line = usage_line(stack, response.headers["x-request-id"])
    # Anthropic input_tokens exclude cache reads and writes; accounting counts all of them.
    assert line["prompt_tokens"] == 3 + 1111 + 418
    assert line["completion_tokens"] > 0 and line["outcome"] == "ok"
    assert line["provider"] == "claude" and line["upstream_model"] == "cache"


def cache_cost(output_tokens: int) -> int:
    """The `cache` script's usage at the stack's prices, in micro-dollars: 3 input at $3,
    418 5m writes at $3.75, 1111 reads at $0.30 and the output at $15 per million tokens."""
    exact = 3 * 3_000_000 + 418 * 3_750_000 + 1111 * 300_000 + output_tokens * 15_000_000
    return (exact + 500_000) // 1_000_000


def test_passthrough_stream_carries_the_cost_like_translated_streams(stack: Stack) -> None:
    response = post(stack, {**BODY, "model": "claude/cache", "stream": True})
    assert response.status == 200
    got = events(response.body)
    [usage] = [payload["usage"] for name, payload in got if name == "message_delta"]
    # BODY enables thinking: 15 output tokens. 9 + 1567.5 + 333.3 + 15 * 15 = 2134.8 -> 2135
    assert usage["output_tokens"] == 15 and cache_cost(15) == 2135
    assert usage["interlock_cost"] == "0.002135"
    # The rest of the event is the upstream's own; the complete answer's header agrees.
    assert {k: v for k, v in usage.items() if k != "interlock_cost"} == {
        "input_tokens": 3,
        "cache_creation_input_tokens": 418,
        "cache_read_input_tokens": 1111,
        "output_tokens": 15,
    }
    whole = post(stack, {**BODY, "model": "claude/cache"})
    assert whole.headers["x-interlock-cost"] == "0.002135"


def test_passthrough_stream_cost_is_readable_through_the_sdk(stack: Stack) -> None:
    with client(stack).messages.stream(
        model="claude/cache", max_tokens=50, messages=MESSAGES
    ) as stream:
        streamed = list(stream)
        final = stream.get_final_message()
    [delta] = [event for event in streamed if event.type == "message_delta"]
    extra = delta.usage.model_extra or {}
    cost = cache_cost(final.usage.output_tokens)
    assert extra["interlock_cost"] == f"0.{cost:06d}"


@pytest.mark.parametrize("streaming", [False, True])
def test_upstream_errors_pass_through_with_their_status(stack: Stack, streaming: bool) -> None:
    sdk = client(stack)
    with pytest.raises(anthropic.RateLimitError) as limited:
        sdk.messages.create(
            model="claude/rate-limit", max_tokens=5, messages=MESSAGES, stream=streaming
        )
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    # Status and type are the upstream's; the envelope and message are the gateway's (issue 8).
    assert "request_id" not in limited.value.body  # type: ignore[operator]
    assert limited.value.response.headers["retry-after"] == "7"
    with pytest.raises(anthropic.BadRequestError) as credit:
        sdk.messages.create(
            model="claude/credit", max_tokens=5, messages=MESSAGES, stream=streaming
        )
    assert "quota" in credit.value.message  # the operator's account: the gateway's words
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        sdk.messages.create(
            model="claude/overloaded", max_tokens=5, messages=MESSAGES, stream=streaming
        )
    assert overloaded.value.status_code == 529
    assert overloaded.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    # Rate limits and overloads are retried on the same (last) target before being relayed;
    # a credit problem (quota) never is.
    assert limited.value.response.headers["x-interlock-attempts"] == "3"
    assert overloaded.value.response.headers["x-interlock-attempts"] == "3"
    assert credit.value.response.headers["x-interlock-attempts"] == "1"
    too_large = post(stack, {**BODY, "model": "claude/too-large", "stream": streaming})
    assert too_large.status == 413 and too_large.json()["error"]["type"] == "request_too_large"


def test_upstream_auth_failure_is_masked(stack: Stack) -> None:
    with pytest.raises(anthropic.APIStatusError) as info:
        client(stack).messages.create(model="claude/fail-401", max_tokens=5, messages=MESSAGES)
    assert info.value.status_code == 502
    assert info.value.body == {
        "type": "error",
        "error": {
            "type": "api_error",
            "message": "the upstream provider rejected the gateway's credentials",
        },
    }
    assert "sk-ant" not in info.value.response.text


@pytest.mark.parametrize(
    ("model", "error_type"), [("error-after-200", "overloaded_error"), ("cut-stream", "api_error")]
)
def test_failure_after_the_first_byte_ends_with_an_error_event(
    stack: Stack, model: str, error_type: str
) -> None:
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as info:
        for event in client(stack).messages.create(
            model=f"claude/{model}", max_tokens=5, messages=MESSAGES, stream=True
        ):
            seen.append(event.type)
    assert seen[:3] == ["message_start", "content_block_start", "content_block_delta"]
    assert info.value.body["error"]["type"] == error_type  # type: ignore[index]
    response = post(stack, {**BODY, "model": f"claude/{model}", "stream": True})
    relayed = events(response.body)
    assert relayed[-1][0] == "error" and relayed[-1][1]["error"]["type"] == error_type
    assert "message_stop" not in [name for name, _ in relayed]
    line = usage_line(stack, response.headers["x-request-id"])
    assert line["outcome"] == "cut:transient" and line["prompt_tokens"] == 25


@pytest.mark.parametrize("streaming", [False, True])
def test_failover_from_anthropic_to_a_translated_target(
    stack: Stack, fakes: tuple[FakeAnthropic, FakeOpenAI], streaming: bool
) -> None:
    claude, openai_like = fakes
    claude.reset()
    openai_like.reset()
    sdk = client(stack)
    result: anthropic.types.Message
    if streaming:
        with sdk.messages.stream(model="mixed", max_tokens=20, messages=MESSAGES) as s:
            result = s.get_final_message()
            headers = s.response.headers
    else:
        response = sdk.messages.with_raw_response.create(
            model="mixed", max_tokens=20, messages=MESSAGES
        )
        result, headers = response.parse(), response.headers
    assert result.content[0].type == "text" and result.content[0].text == OPENAI_TEXT
    assert headers["x-interlock-provider"] == "fake" and headers["x-interlock-attempts"] == "2"
    assert [r.json["model"] for r in claude.received] == ["overloaded"]
    assert [r.json["model"] for r in openai_like.received] == ["gpt-fake"]


@pytest.mark.parametrize("streaming", [False, True])
def test_failover_from_a_translated_target_to_anthropic(
    stack: Stack, fakes: tuple[FakeAnthropic, FakeOpenAI], streaming: bool
) -> None:
    claude, openai_like = fakes
    claude.reset()
    openai_like.reset()
    body = {"model": "mixed-reverse", "max_tokens": 20, "messages": MESSAGES, "stream": streaming}
    response = post(stack, body)
    assert response.status == 200
    assert response.headers["x-interlock-provider"] == "claude"
    assert response.headers["x-interlock-attempts"] == "2"
    assert [r.json["model"] for r in openai_like.received] == ["fail-500"]
    [sent] = claude.received
    assert sent.body == orjson.dumps({**body, "model": "claude-test"})


def test_targets_that_cannot_take_the_request_are_skipped(
    stack: Stack, fakes: tuple[FakeAnthropic, FakeOpenAI]
) -> None:
    claude, openai_like = fakes
    claude.reset()
    openai_like.reset()
    # top_k and container have no OpenAI equivalent: the strict route skips the translated
    # target and the Anthropic one serves the request as the client wrote it.
    response = post(stack, {**BODY, "model": "mixed-reverse"})
    assert response.status == 200 and response.headers["x-interlock-attempts"] == "1"
    assert openai_like.received == []
    assert claude.received[0].body == orjson.dumps({**BODY, "model": "claude-test"})


def test_failover_between_anthropic_targets(stack: Stack, claude: FakeAnthropic) -> None:
    claude.reset()
    response = client(stack).messages.with_raw_response.create(
        model="claude-retry", max_tokens=20, messages=MESSAGES
    )
    assert response.parse().content[0].type == "text"
    assert response.headers["x-interlock-attempts"] == "2"
    assert [r.json["model"] for r in claude.received] == ["rate-limit", "claude-test"]
    line = usage_line(stack, response.headers["x-request-id"])
    assert line["attempts"] == 2 and line["upstream_model"] == "claude-test"


# --- the pure and framing parts, with scripted upstream bytes ------------------------------


class _Content:
    def __init__(self, writes: list[bytes | Exception]) -> None:
        self._writes = writes

    async def readany(self) -> bytes:
        if not self._writes:
            return b""
        item = self._writes.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


class _Response:
    def __init__(self, writes: list[bytes | Exception]) -> None:
        self.content = _Content(writes)
        self.closed = self.released = False

    async def chunk(self) -> bytes:  # core.providers.client.Answer's
        return await self.content.readany()

    def close(self) -> None:
        self.closed = True

    def release(self) -> None:
        self.released = True


def relay_scripted(
    writes: list[bytes | Exception],
) -> tuple[bytes, list[tuple[Any, str]], _Response]:
    response = _Response(writes)
    stream = PassthroughStream(UpstreamBody(response), TARGET)  # type: ignore[arg-type]
    ended: list[tuple[Any, str]] = []

    async def run() -> bytes:
        await stream.prime()
        return b"".join([part async for part in stream.relay(lambda u, s, e: ended.append((u, s)))])

    return asyncio.run(run()), ended, response


START = (
    b"event: message_start\ndata: "
    b'{"type":"message_start","message":{"usage":{"input_tokens":9,"output_tokens":1}}}\n\n'
)


def test_relay_reframes_whole_events_and_never_leaks_a_partial_one() -> None:
    body, ended, response = relay_scripted(
        [
            START[:10],
            START[10:] + b"event: x\ndata: a\ndata: b\n\n",
            b'event: content_block_delta\ndata: {"PARTIAL',
        ]
    )
    assert body.startswith(START + b"event: x\ndata: a\ndata: b\n\n")
    assert b"PARTIAL" not in body  # the half event the upstream never finished is not relayed
    assert body.endswith(b"\n\n") and body.rsplit(b"\n\n", 2)[-2].startswith(b"event: error\n")
    assert ended == [
        (
            {
                "prompt_tokens": 9,
                "completion_tokens": 1,
                "total_tokens": 10,
                "prompt_tokens_details": {
                    "cached_tokens": 0,
                    "cache_write_tokens": 0,
                    "cache_creation_tokens": 0,
                },
            },
            "cut:transient",
        )
    ]
    assert response.closed and not response.released


def test_relay_stops_after_message_stop_and_counts_cumulative_usage() -> None:
    delta = b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":12}}\n\n'
    stop = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    body, ended, response = relay_scripted([START + delta + stop + b"event: late\ndata: {}\n\n"])
    assert body == START + delta + stop
    assert ended[0][0]["completion_tokens"] == 12 and ended[0][1] == "ok"
    assert response.released


def test_message_delta_shows_the_cost_and_accounting_gets_the_usage_it_priced() -> None:
    delta = b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":12}}\n\n'
    stop = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    priced: list[Any] = []

    def cost_of(usage: dict[str, Any] | None) -> Cost:
        priced.append(usage)
        return Cost(1234, "test@2026-01-01")

    stream = PassthroughStream(UpstreamBody(_Response([START + delta + stop])), TARGET)  # type: ignore[arg-type]
    ended: list[Any] = []

    async def run() -> bytes:
        await stream.prime()
        parts = stream.relay(lambda u, s, e: ended.append(u), cost_of)
        return b"".join([part async for part in parts])

    body = asyncio.run(run())
    shown = b'{"type":"message_delta","usage":{"output_tokens":12,"interlock_cost":"0.001234"}}'
    assert body == START + b"event: message_delta\ndata: " + shown + b"\n\n" + stop
    # priced once, on the cumulative usage; the stream's end hands accounting that same object
    assert len(priced) == 1 and priced[0]["completion_tokens"] == 12
    assert ended == priced and ended[0] is priced[0]


def test_an_error_as_the_first_event_can_still_fail_over() -> None:
    error = (
        b"event: error\ndata: "
        b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    )
    with pytest.raises(ProviderError) as info:
        relay_scripted([error])
    assert info.value.failure_class in FAILOVER_CLASSES
    with pytest.raises(ProviderError):
        relay_scripted([])  # closed before any event


def test_transport_failure_mid_stream_ends_with_an_error_event() -> None:
    body, ended, _ = relay_scripted([START, Disconnected(responded=True)])
    assert body.startswith(START) and b"event: error" in body
    assert ended[0][1] == "cut:transient"


def test_upstream_error_classification() -> None:
    envelope = orjson.dumps(
        {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}
    )
    relayed = upstream_error(429, {"retry-after": "3"}, envelope, TARGET)
    assert isinstance(relayed, RelayedError)
    assert (relayed.status, relayed.headers) == (429, {"retry-after": "3"})
    assert orjson.loads(relayed.body)["error"]["type"] == "rate_limit_error"
    masked = upstream_error(
        403,
        {},
        orjson.dumps(
            {"type": "error", "error": {"type": "permission_error", "message": "key sk-ant-x"}}
        ),
        TARGET,
    )
    assert not isinstance(masked, RelayedError) and masked.status == 502
    assert b"sk-ant" not in masked.anthropic_body() and b"api_error" in masked.anthropic_body()
    html = upstream_error(502, {}, b"<html>bad gateway</html>", TARGET)
    assert not isinstance(html, RelayedError) and html.failure_class in FAILOVER_CLASSES
    assert orjson.loads(html.anthropic_body())["type"] == "error"
