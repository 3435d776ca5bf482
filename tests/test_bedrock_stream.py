"""Golden tests: ConverseStream event-stream frames -> canonical OpenAI chunks."""

from __future__ import annotations

from typing import Any

import pytest

from core.providers.adapters.base import JSON, ProviderError, Target
from core.providers.adapters.bedrock import ADAPTER
from core.providers.adapters.bedrock.request import RESPONSE_TOOL
from shared.config import ProviderConfig
from shared.errors import FailureClass
from tests.support.eventstream_encode import encode_message, event_frame, exception_frame
from tests.support.providers import provider_of

PROVIDER = ProviderConfig("aws", "bedrock", None, (), {}, None, False, {"region": "us-east-1"})
TARGET = Target(provider_of(PROVIDER), "us.amazon.nova-micro-v1:0", None)
START = event_frame("messageStart", {"role": "assistant", "p": "abc"})
USAGE = {"inputTokens": 20, "outputTokens": 9, "totalTokens": 29}


def text(block: int, piece: str) -> bytes:
    return event_frame("contentBlockDelta", {"contentBlockIndex": block, "delta": {"text": piece}})


def tool_start(block: int, call_id: str, name: str) -> bytes:
    start = {"toolUse": {"toolUseId": call_id, "name": name}}
    return event_frame("contentBlockStart", {"contentBlockIndex": block, "start": start})


def tool_input(block: int, fragment: str) -> bytes:
    delta = {"toolUse": {"input": fragment}}
    return event_frame("contentBlockDelta", {"contentBlockIndex": block, "delta": delta})


def stop_block(block: int) -> bytes:
    return event_frame("contentBlockStop", {"contentBlockIndex": block})


def message_stop(reason: str) -> bytes:
    return event_frame("messageStop", {"stopReason": reason})


def metadata(usage: dict[str, Any] = USAGE) -> bytes:
    return event_frame("metadata", {"usage": usage, "metrics": {"latencyMs": 5}})


def run(stream: bytes, canonical: JSON | None = None, split: int = 7) -> list[JSON]:
    """Decode and parse as the upstream does, in writes of `split` bytes."""
    decoder = ADAPTER.decoder()
    parser = ADAPTER.stream_parser(canonical or {}, TARGET)
    chunks: list[JSON] = []
    for i in range(0, len(stream), split):
        for event in decoder.feed(stream[i : i + split]):
            chunks += parser.feed(event)
    for event in decoder.finish():
        chunks += parser.feed(event)
    chunks += parser.finish()
    ids = {c["id"] for c in chunks}
    assert len(ids) == 1 and ids.pop().startswith("chatcmpl-")
    assert all(
        c["object"] == "chat.completion.chunk" and c["model"] == TARGET.model for c in chunks
    )
    return [{k: v for k, v in c.items() if k in ("choices", "usage")} for c in chunks]


def delta(d: dict[str, Any], finish: str | None = None) -> JSON:
    return {"choices": [{"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}]}


def usage_chunk(prompt: int = 20, completion: int = 9, cached: int = 0, written: int = 0) -> JSON:
    return {
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {
                "cached_tokens": cached,
                "cache_write_tokens": written,
                "cache_creation_tokens": written,
            },
        },
    }


def test_text_stream_golden() -> None:
    stream = (
        START
        + text(0, "Hel")
        + text(0, "lo")
        + stop_block(0)
        + message_stop("end_turn")
        + metadata({**USAGE, "cacheReadInputTokens": 100, "cacheWriteInputTokens": 7})
    )
    assert run(stream) == [
        delta({"role": "assistant", "content": ""}),
        delta({"content": "Hel"}),
        delta({"content": "lo"}),
        delta({}, "stop"),
        usage_chunk(prompt=127, cached=100, written=7),
    ]


def test_tool_calls_get_their_own_index_separate_from_content_blocks() -> None:
    stream = (
        START
        + text(0, "Checking.")
        + stop_block(0)
        + tool_start(1, "tooluse_a", "get_weather")
        + tool_input(1, '{"city":')
        + tool_input(1, '"Paris"}')
        + stop_block(1)
        + tool_start(2, "tooluse_b", "get_time")
        + tool_input(2, "{}")
        + stop_block(2)
        + message_stop("tool_use")
        + metadata()
    )
    assert run(stream, split=1) == [
        delta({"role": "assistant", "content": ""}),
        delta({"content": "Checking."}),
        delta(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "tooluse_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        delta({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        delta({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        delta(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "tooluse_b",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": ""},
                    }
                ]
            }
        ),
        delta({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
        delta({}, "tool_calls"),
        usage_chunk(),
    ]


def test_reasoning_deltas_and_signatures() -> None:
    reasoning = [
        {"reasoningContent": {"text": "Think"}},
        {"reasoningContent": {"signature": "sig"}},
        {"reasoningContent": {"redactedContent": "AAAA"}},
    ]
    frames = b"".join(
        event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": d}) for d in reasoning
    )
    stream = START + frames + stop_block(0) + text(1, "Hi") + message_stop("end_turn") + metadata()
    assert run(stream) == [
        delta({"role": "assistant", "content": ""}),
        delta({"reasoning_content": "Think"}),
        delta({"content": "Hi"}),
        delta({}, "stop"),
        usage_chunk(),
    ]


def test_response_format_tool_streams_as_content() -> None:
    stream = (
        START
        + tool_start(0, "tooluse_r", RESPONSE_TOOL)
        + tool_input(0, '{"answer"')
        + tool_input(0, ':"42"}')
        + stop_block(0)
        + message_stop("tool_use")
        + metadata()
    )
    canonical = {"response_format": {"type": "json_object"}}
    assert run(stream, canonical) == [
        delta({"role": "assistant", "content": ""}),
        delta({"content": '{"answer"'}),
        delta({"content": ':"42"}'}),
        delta({}, "stop"),
        usage_chunk(),
    ]


def test_usage_is_last_even_if_metadata_comes_first() -> None:
    stream = START + text(0, "x") + metadata() + message_stop("max_tokens")
    chunks = run(stream)
    assert chunks[-2:] == [delta({}, "length"), usage_chunk()]


def test_missing_message_start_still_opens_with_the_role() -> None:
    assert run(text(0, "x") + message_stop("end_turn") + metadata())[0] == delta(
        {"role": "assistant", "content": ""}
    )


@pytest.mark.parametrize(
    ("exception", "status", "failure"),
    [
        ("throttlingException", 429, FailureClass.RATE_LIMIT),
        ("modelStreamErrorException", 502, FailureClass.TRANSIENT),
        ("internalServerException", 502, FailureClass.TRANSIENT),
        ("serviceUnavailableException", 503, FailureClass.TRANSIENT),
        ("validationException", 400, FailureClass.CLIENT_ERROR),
        ("somethingNewException", 502, FailureClass.TRANSIENT),
    ],
)
def test_exception_frames_after_200(exception: str, status: int, failure: FailureClass) -> None:
    decoder = ADAPTER.decoder()
    parser = ADAPTER.stream_parser({}, TARGET)
    chunks: list[JSON] = []
    events = decoder.feed(START + text(0, "partial") + exception_frame(exception, "went wrong"))
    with pytest.raises(ProviderError) as info:
        for event in events:
            chunks += parser.feed(event)
    assert len(chunks) == 2  # the first chunks were produced before the failure
    assert (info.value.status, info.value.failure_class) == (status, failure)
    assert info.value.message == "went wrong"


def test_error_message_type_frame() -> None:
    frame = encode_message(
        [
            (":message-type", 7, "error"),
            (":error-code", 7, "InternalFailure"),
            (":error-message", 7, "internal failure"),
        ],
        b"",
    )
    parser = ADAPTER.stream_parser({}, TARGET)
    [event] = ADAPTER.decoder().feed(frame)
    with pytest.raises(ProviderError) as info:
        parser.feed(event)
    assert info.value.failure_class is FailureClass.TRANSIENT
    assert info.value.message == "internal failure"


@pytest.mark.parametrize(
    "stream",
    [
        START + text(0, "x"),  # no messageStop, no metadata
        START + text(0, "x") + message_stop("end_turn"),  # usage never came
        START + metadata(),  # no finish reason
    ],
)
def test_incomplete_streams_fail_at_finish(stream: bytes) -> None:
    with pytest.raises(ProviderError) as info:
        run(stream)
    assert (info.value.status, info.value.failure_class) == (502, FailureClass.TRANSIENT)


def test_malformed_event_payload() -> None:
    frame = encode_message(
        [(":message-type", 7, "event"), (":event-type", 7, "contentBlockDelta")], b"{nope"
    )
    [event] = ADAPTER.decoder().feed(frame)
    with pytest.raises(ProviderError) as info:
        ADAPTER.stream_parser({}, TARGET).feed(event)
    assert info.value.failure_class is FailureClass.TRANSIENT
