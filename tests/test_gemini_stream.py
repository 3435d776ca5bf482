"""Golden tests: Gemini streamGenerateContent?alt=sse bytes -> canonical chunks, any split."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.providers.adapters.base import ProviderError, StreamEvent, Target
from core.providers.adapters.gemini import ADAPTER
from core.providers.adapters.gemini.calls import signature_of, tool_call_id
from shared.config import ProviderConfig
from shared.errors import FailureClass
from tests.support.providers import provider_of

PROVIDER = ProviderConfig("gem", "gemini", None, ("k",), {}, None, True, {})
TARGET = Target(provider_of(PROVIDER), "gemini-3-pro-preview", "k")
SIGNATURE = "EpwICpkIAXLI2nxlU6gsWZaZ+HRYkX1orzuM8vSUF/waAt1JRxEC2hJzPAcAu3PWaKz7X+PIyTTqF+ZIQ=="


def sse(*events: dict[str, Any]) -> bytes:
    # Real Gemini frames events with CRLF and puts spaces after colons.
    return b"".join(
        b"data: " + orjson.dumps(e).replace(b'":', b'": ') + b"\r\n\r\n" for e in events
    )


def run(raw: bytes, cuts: list[int] | None = None) -> list[dict[str, Any]]:
    """Decode and parse `raw` delivered in pieces split at `cuts`; `created` is dropped."""
    decoder = ADAPTER.decoder()
    parser = ADAPTER.stream_parser({}, TARGET)
    bounds = [0, *sorted(cuts or []), len(raw)]
    chunks: list[dict[str, Any]] = []
    for start, end in itertools.pairwise(bounds):
        for event in decoder.feed(raw[start:end]):
            chunks.extend(parser.feed(event))
    for event in decoder.finish():
        chunks.extend(parser.feed(event))
    chunks.extend(parser.finish())
    for chunk in chunks:
        assert isinstance(chunk.pop("created"), int)
    return chunks


USAGE_EARLY = {"promptTokenCount": 29, "totalTokenCount": 29}
USAGE_LAST = {
    "promptTokenCount": 29,
    "cachedContentTokenCount": 8,
    "candidatesTokenCount": 10,
    "thoughtsTokenCount": 202,
    "totalTokenCount": 241,
}


def response(parts: list[dict[str, Any]] | None, finish: str | None = None, **extra: Any) -> Any:
    candidate: dict[str, Any] = {"index": 0}
    if parts is not None:
        candidate["content"] = {"parts": parts, "role": "model"}
    if finish:
        candidate["finishReason"] = finish
    return {
        "candidates": [candidate],
        "usageMetadata": extra.pop("usage", USAGE_EARLY),
        "modelVersion": "gemini-3-pro-preview",
        "responseId": "resp7",
        **extra,
    }


TOOL_STREAM = sse(
    response([{"text": "Thinking about it.", "thought": True}]),
    response([{"text": "Let me look."}]),
    response(
        [{"functionCall": {"name": "get_country", "args": {}}, "thoughtSignature": SIGNATURE}]
    ),
    response([{"functionCall": {"name": "get_weather", "args": {"city": "Zürich"}}}]),
    response([{"text": ""}], "STOP", usage=USAGE_LAST),
)


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-resp7",
        "object": "chat.completion.chunk",
        "model": "gemini-3-pro-preview",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


TOOL_EXPECTED = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"reasoning_content": "Thinking about it."}),
    chunk({"content": "Let me look."}),
    chunk(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": tool_call_id("resp7", 0, 0, SIGNATURE),
                    "type": "function",
                    "function": {"name": "get_country", "arguments": "{}"},
                }
            ]
        }
    ),
    chunk(
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": tool_call_id("resp7", 0, 1, None),
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Zürich"}'},
                }
            ]
        }
    ),
    chunk({}, "tool_calls"),  # STOP arrived in a later event than the calls
    {
        "id": "chatcmpl-resp7",
        "object": "chat.completion.chunk",
        "model": "gemini-3-pro-preview",
        "choices": [],
        "usage": {
            "prompt_tokens": 29,
            "completion_tokens": 212,
            "total_tokens": 241,
            "prompt_tokens_details": {"cached_tokens": 8},
            "completion_tokens_details": {"reasoning_tokens": 202},
        },
    },
]


def test_tool_stream_golden() -> None:
    chunks = run(TOOL_STREAM)
    assert chunks == TOOL_EXPECTED
    assert signature_of(chunks[3]["choices"][0]["delta"]["tool_calls"][0]) == SIGNATURE


def test_every_single_split_point_gives_the_same_chunks() -> None:
    for cut in range(1, len(TOOL_STREAM)):
        assert run(TOOL_STREAM, [cut]) == TOOL_EXPECTED, cut


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(TOOL_STREAM) - 1), max_size=12))
def test_arbitrary_splits_give_the_same_chunks(cuts: list[int]) -> None:
    assert run(TOOL_STREAM, cuts) == TOOL_EXPECTED


def test_text_stream_uses_the_last_usage() -> None:
    raw = sse(
        {
            "candidates": [{"content": {"parts": [{"text": "The"}], "role": "model"}}],
            "usageMetadata": {"promptTokenCount": 15, "totalTokenCount": 15},
            "responseId": "t1",
        },
        {
            "candidates": [
                {"content": {"parts": [{"text": " end."}], "role": "model"}, "finishReason": "STOP"}
            ],
            "usageMetadata": {
                "promptTokenCount": 13,
                "candidatesTokenCount": 8,
                "totalTokenCount": 21,
            },
            "responseId": "t1",
        },
    )
    chunks = run(raw)
    assert [c["choices"][0]["delta"] for c in chunks[:-1]] == [
        {"role": "assistant", "content": ""},
        {"content": "The"},
        {"content": " end."},
        {},
    ]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["prompt_tokens"] == 13
    assert chunks[-1]["usage"]["total_tokens"] == 21
    assert chunks[0]["model"] == "gemini-3-pro-preview"  # no modelVersion: the target's


@pytest.mark.parametrize(
    ("finish", "expected"),
    [("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter")],
)
def test_finish_reasons_in_streams(finish: str, expected: str) -> None:
    chunks = run(sse(response([{"text": "partial"}]), response(None, finish)))
    assert chunks[-2]["choices"][0]["finish_reason"] == expected
    assert chunks[-1]["choices"] == []


def test_prompt_blocked_stream() -> None:
    raw = sse(
        {
            "promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
            "responseId": "b1",
        }
    )
    chunks = run(raw)
    assert [c["choices"][0] for c in chunks[:-1]] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        },
        {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "content_filter"},
    ]
    assert chunks[-1]["usage"]["prompt_tokens"] == 9


def test_interleaved_candidates_are_routed_by_index() -> None:
    def event(index: int, text: str, finish: str | None = None) -> dict[str, Any]:
        candidate: dict[str, Any] = {"index": index, "content": {"parts": [{"text": text}]}}
        if finish:
            candidate["finishReason"] = finish
        return {"candidates": [candidate], "responseId": "m"}

    raw = sse(event(0, "a"), event(1, "x"), event(0, "b", "STOP"), event(1, "y", "MAX_TOKENS"))
    chunks = run(raw)
    by_index: dict[int, list[Any]] = {}
    for c in chunks[:-1]:
        choice = c["choices"][0]
        by_index.setdefault(choice["index"], []).append(
            choice["delta"].get("content", choice["finish_reason"])
        )
    assert by_index == {0: ["", "a", "b", "stop"], 1: ["", "x", "y", "length"]}


def test_cut_stream_fails_in_finish() -> None:
    parser = ADAPTER.stream_parser({}, TARGET)
    parser.feed(StreamEvent(None, orjson.dumps(response([{"text": "half"}]))))
    with pytest.raises(ProviderError) as caught:
        parser.finish()
    assert (caught.value.status, caught.value.failure_class) == (502, FailureClass.TRANSIENT)
    with pytest.raises(ProviderError):
        ADAPTER.stream_parser({}, TARGET).finish()  # nothing at all


@pytest.mark.parametrize(
    ("error", "status", "failure"),
    [
        (
            {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"},
            503,
            FailureClass.TRANSIENT,
        ),
        (
            {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"},
            429,
            FailureClass.RATE_LIMIT,
        ),
        ({"code": 500, "message": "internal", "status": "INTERNAL"}, 502, FailureClass.TRANSIENT),
        ({"message": "no code"}, 502, FailureClass.TRANSIENT),
    ],
)
def test_error_after_200(error: dict[str, Any], status: int, failure: FailureClass) -> None:
    parser = ADAPTER.stream_parser({}, TARGET)
    assert parser.feed(StreamEvent(None, orjson.dumps(response([{"text": "ok"}]))))
    with pytest.raises(ProviderError) as caught:
        parser.feed(StreamEvent(None, orjson.dumps({"error": error})))
    assert (caught.value.status, caught.value.failure_class) == (status, failure)


def test_malformed_function_call_in_a_stream_is_an_error() -> None:
    parser = ADAPTER.stream_parser({}, TARGET)
    with pytest.raises(ProviderError) as caught:
        parser.feed(StreamEvent(None, orjson.dumps(response(None, "MALFORMED_FUNCTION_CALL"))))
    assert caught.value.failure_class is FailureClass.TRANSIENT
    assert caught.value.code == "malformed_function_call"


@pytest.mark.parametrize("data", [b"{not json", b"[1]", b'"text"'])
def test_garbage_events_are_transient(data: bytes) -> None:
    with pytest.raises(ProviderError) as caught:
        ADAPTER.stream_parser({}, TARGET).feed(StreamEvent(None, data))
    assert caught.value.failure_class is FailureClass.TRANSIENT


def test_keepalive_comments_and_blank_events_are_ignored() -> None:
    raw = b": keep-alive\r\n\r\n" + sse(response([{"text": "hi"}], "STOP"))
    chunks = run(raw)
    assert [c["choices"][0]["delta"] for c in chunks[:-1]] == [
        {"role": "assistant", "content": ""},
        {"content": "hi"},
        {},
    ]
