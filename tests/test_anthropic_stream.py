"""Stream parser goldens: Anthropic SSE bytes -> canonical chunks, under any byte split."""

from __future__ import annotations

from typing import Any

import openai.types.chat as oa
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.providers.adapters.anthropic import ADAPTER
from core.providers.adapters.base import ProviderError, Target
from shared.config import ProviderConfig
from shared.errors import FailureClass
from tests.support.providers import provider_of

PROVIDER = ProviderConfig("claude", "anthropic", None, ("k",), {}, None, True, {})
TARGET = Target(provider_of(PROVIDER), "claude-sonnet-4-5", "k")


def sse(*events: tuple[str, dict[str, Any]], trailing: str = "   ") -> bytes:
    # Real frames pad the JSON with spaces and send pings as `{"type": "ping"}`.
    return b"".join(
        b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + trailing.encode() + b"\n\n"
        for name, data in events
    )


def start(usage: dict[str, int] | None = None) -> tuple[str, dict[str, Any]]:
    return (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_01Stream",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5-20250929",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": usage or {"input_tokens": 20, "output_tokens": 1},
            },
        },
    )


def block_start(index: int, block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return (
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )


def delta(index: int, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return (
        "content_block_delta",
        {"type": "content_block_delta", "index": index, "delta": payload},
    )


def stop(index: int) -> tuple[str, dict[str, Any]]:
    return ("content_block_stop", {"type": "content_block_stop", "index": index})


def message_delta(reason: str, usage: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": None},
            "usage": usage,
        },
    )


PING = ("ping", {"type": "ping"})
MESSAGE_STOP = ("message_stop", {"type": "message_stop"})

TEXT_STREAM = sse(
    start(),
    block_start(0, {"type": "text", "text": ""}),
    PING,
    delta(0, {"type": "text_delta", "text": "Hel"}),
    delta(0, {"type": "text_delta", "text": "lo ✓"}),
    stop(0),
    message_delta("end_turn", {"output_tokens": 4}),
    MESSAGE_STOP,
)

MIXED_STREAM = sse(
    start(),
    block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
    PING,
    delta(0, {"type": "thinking_delta", "thinking": "Need weather"}),
    delta(0, {"type": "thinking_delta", "thinking": ""}),
    delta(0, {"type": "signature_delta", "signature": "sig=="}),
    stop(0),
    block_start(1, {"type": "text", "text": ""}),
    delta(1, {"type": "text_delta", "text": "Checking."}),
    stop(1),
    block_start(2, {"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {}}),
    delta(2, {"type": "input_json_delta", "partial_json": ""}),
    delta(2, {"type": "input_json_delta", "partial_json": '{"city": '}),
    delta(2, {"type": "input_json_delta", "partial_json": '"Paris"}'}),
    stop(2),
    block_start(3, {"type": "tool_use", "id": "toolu_B", "name": "now", "input": {}}),
    stop(3),
    message_delta(
        "tool_use",
        {"input_tokens": 20, "output_tokens": 60, "output_tokens_details": {"thinking_tokens": 9}},
    ),
    MESSAGE_STOP,
)


def run(data: bytes, cuts: list[int] | None = None) -> list[dict[str, Any]]:
    decoder = ADAPTER.decoder()
    parser = ADAPTER.stream_parser({}, TARGET)
    chunks: list[dict[str, Any]] = []
    position = 0
    for cut in [*(cuts or []), len(data)]:
        for event in decoder.feed(data[position:cut]):
            chunks.extend(parser.feed(event))
        position = cut
    for event in decoder.finish():
        chunks.extend(parser.feed(event))
    chunks.extend(parser.finish())
    for chunk in chunks:
        oa.ChatCompletionChunk.model_validate(chunk)  # what the OpenAI SDK will parse
    return chunks


def deltas(chunks: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str | None]]:
    return [
        (c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in chunks if c["choices"]
    ]


def test_text_stream_golden() -> None:
    chunks = run(TEXT_STREAM)
    assert deltas(chunks) == [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "Hel"}, None),
        ({"content": "lo ✓"}, None),
        ({}, "stop"),
    ]
    first = chunks[0]
    assert first["id"] == "msg_01Stream"
    assert first["object"] == "chat.completion.chunk"
    assert first["model"] == "claude-sonnet-4-5-20250929"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 20,
        "completion_tokens": 4,
        "total_tokens": 24,
        "prompt_tokens_details": {
            "cached_tokens": 0,
            "cache_write_tokens": 0,
            "cache_creation_tokens": 0,
        },
    }
    assert all("usage" not in c for c in chunks[:-1])


def test_thinking_text_and_tools_keep_a_separate_tool_index() -> None:
    chunks = run(MIXED_STREAM)
    assert deltas(chunks) == [
        ({"role": "assistant", "content": ""}, None),
        ({"reasoning_content": "Need weather"}, None),
        (
            {
                "thinking_blocks": [
                    {"type": "thinking", "thinking": "Need weather", "signature": "sig=="}
                ]
            },
            None,
        ),
        ({"content": "Checking."}, None),
        # content_block index 2 is the first tool call: tool index 0 (trap 3).
        (
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "toolu_A",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            },
            None,
        ),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}, None),
        (
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "toolu_B",
                        "type": "function",
                        "function": {"name": "now", "arguments": ""},
                    }
                ]
            },
            None,
        ),
        # A tool without input deltas still gets arguments that parse.
        ({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}, None),
        ({}, "tool_calls"),
    ]
    assert chunks[-1]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 9}
    assert chunks[-1]["usage"]["completion_tokens"] == 60


def test_cache_usage_from_message_start_and_cumulative_delta() -> None:
    data = sse(
        start(
            {
                "input_tokens": 3,
                "cache_read_input_tokens": 1111,
                "cache_creation_input_tokens": 418,
                "output_tokens": 1,
            }
        ),
        block_start(0, {"type": "text", "text": ""}),
        delta(0, {"type": "text_delta", "text": "ok"}),
        stop(0),
        message_delta("end_turn", {"output_tokens": 33}),
        MESSAGE_STOP,
    )
    assert run(data)[-1]["usage"] == {
        "prompt_tokens": 1532,
        "completion_tokens": 33,
        "total_tokens": 1565,
        "prompt_tokens_details": {
            "cached_tokens": 1111,
            "cache_write_tokens": 418,
            "cache_creation_tokens": 418,
        },
    }


@pytest.mark.parametrize(
    ("reason", "finish"),
    [("max_tokens", "length"), ("refusal", "content_filter"), ("stop_sequence", "stop")],
)
def test_stop_reasons_in_streams(reason: str, finish: str) -> None:
    data = sse(start(), message_delta(reason, {"output_tokens": 2}), MESSAGE_STOP)
    assert deltas(run(data))[-1] == ({}, finish)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_byte_split_gives_the_same_chunks(data: st.DataObject) -> None:
    stream = data.draw(
        st.sampled_from([TEXT_STREAM, MIXED_STREAM, TEXT_STREAM.replace(b"\n", b"\r\n")])
    )
    cuts = sorted(data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=40)))
    expected = [{k: v for k, v in c.items() if k != "created"} for c in run(stream)]
    got = [{k: v for k, v in c.items() if k != "created"} for c in run(stream, cuts)]
    assert got == expected


def test_every_single_split_point() -> None:
    expected = deltas(run(MIXED_STREAM))
    for cut in range(1, len(MIXED_STREAM)):
        assert deltas(run(MIXED_STREAM, [cut])) == expected


@pytest.mark.parametrize(
    ("error_type", "status", "failure"),
    [
        ("overloaded_error", 503, FailureClass.TRANSIENT),
        ("api_error", 502, FailureClass.TRANSIENT),
        ("rate_limit_error", 429, FailureClass.RATE_LIMIT),
        ("invalid_request_error", 400, FailureClass.CLIENT_ERROR),
    ],
)
def test_error_event_after_200(error_type: str, status: int, failure: FailureClass) -> None:
    parser = ADAPTER.stream_parser({}, TARGET)
    decoder = ADAPTER.decoder()
    head = sse(
        start(),
        block_start(0, {"type": "text", "text": ""}),
        delta(0, {"type": "text_delta", "text": "12"}),
    )
    produced = [c for e in decoder.feed(head) for c in parser.feed(e)]
    assert deltas(produced)[-1] == ({"content": "12"}, None)
    error = {
        "type": "error",
        "error": {"details": None, "type": error_type, "message": "Overloaded"},
    }
    [event] = decoder.feed(sse(("error", error)))
    with pytest.raises(ProviderError) as info:
        parser.feed(event)
    assert info.value.status == status
    assert info.value.failure_class is failure


@pytest.mark.parametrize("keep", [1, 4, 7])
def test_stream_without_message_stop_fails_at_finish(keep: int) -> None:
    events = [
        start(),
        block_start(0, {"type": "text", "text": ""}),
        delta(0, {"type": "text_delta", "text": "partial"}),
        stop(0),
        message_delta("end_turn", {"output_tokens": 2}),
        MESSAGE_STOP,
    ]
    data = sse(*events[:keep]) if keep < len(events) else sse(*events[:-1])
    with pytest.raises(ProviderError) as info:
        run(data)
    assert info.value.status == 502
    assert info.value.failure_class is FailureClass.TRANSIENT


def test_unknown_events_and_pings_are_ignored_and_nothing_follows_message_stop() -> None:
    future = ("some_future_event", {"type": "some_future_event", "x": 1})
    data = sse(
        start(),
        future,
        block_start(0, {"type": "text", "text": ""}),
        delta(0, {"type": "citations_delta", "citation": {}}),
        PING,
        stop(0),
        message_delta("end_turn", {"output_tokens": 1}),
        MESSAGE_STOP,
        block_start(1, {"type": "text", "text": "late"}),
    )
    chunks = run(data)
    assert deltas(chunks) == [({"role": "assistant", "content": ""}, None), ({}, "stop")]
    assert chunks[-1]["choices"] == []


def test_malformed_event_data_is_a_transient_error() -> None:
    parser = ADAPTER.stream_parser({}, TARGET)
    [event] = ADAPTER.decoder().feed(b"event: content_block_delta\ndata: {not json\n\n")
    with pytest.raises(ProviderError) as info:
        parser.feed(event)
    assert info.value.failure_class is FailureClass.TRANSIENT
