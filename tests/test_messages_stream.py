"""Golden tests for AnthropicStreamEncoder: canonical chunks in, valid Anthropic SSE out.

Every produced event is validated with the anthropic SDK's own stream event type, and the
block sequence is checked the way the SDK consumes it (contiguous blocks, dense indexes).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from anthropic.types import RawMessageStreamEvent
from pydantic import TypeAdapter

from core.api.messages.stream import AnthropicStreamEncoder
from core.providers.adapters.base import ProviderError
from core.wire.sse import SSEDecoder
from shared.errors import FailureClass

EVENT = TypeAdapter(RawMessageStreamEvent)


def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any
) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {
        "id": "chatcmpl-s1",
        "object": "chat.completion.chunk",
        "model": "gpt-x",
        "choices": choices,
        **extra,
    }


def call(
    index: int, arguments: str, call_id: str | None = None, name: str | None = None
) -> dict[str, Any]:
    fragment: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id:
        fragment.update(id=call_id, type="function")
        fragment["function"]["name"] = name
    return {"tool_calls": [fragment]}


USAGE = {
    "prompt_tokens": 30,
    "completion_tokens": 9,
    "total_tokens": 39,
    "prompt_tokens_details": {"cached_tokens": 20},
}


def encode(
    chunks: list[dict[str, Any]], finish_ok: bool = True
) -> list[tuple[str, dict[str, Any]]]:
    encoder = AnthropicStreamEncoder("msg_fallback", "fallback-model", ("END",))
    out = b"".join(encoder.chunk(c) or b"" for c in chunks)
    if finish_ok:
        out += encoder.done()
    decoder = SSEDecoder()
    events = decoder.feed(out) + decoder.finish()
    assert out.endswith(b"\n\n") and b"[DONE]" not in out
    return [(e.event or "", orjson.loads(e.data)) for e in events]


def check(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Validates every event and the block grammar; returns the message the SDK would build."""
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    message: dict[str, Any] = {}
    open_index: int | None = None
    buffers: dict[int, str] = {}
    for name, payload in events:
        assert payload["type"] == name
        EVENT.validate_python(payload)
        if name == "message_start":
            message = {**payload["message"], "content": []}
        elif name == "content_block_start":
            assert open_index is None, "a block started before the previous one stopped"
            assert payload["index"] == len(message["content"]), "indexes must be dense"
            open_index = payload["index"]
            message["content"].append(dict(payload["content_block"]))
        elif name == "content_block_delta":
            assert open_index is not None and payload["index"] == open_index, "block not open"
            block, delta = message["content"][open_index], payload["delta"]
            kind = {
                "text_delta": "text",
                "thinking_delta": "thinking",
                "input_json_delta": "tool_use",
            }
            assert block["type"] == kind[delta["type"]]
            if delta["type"] == "input_json_delta":
                buffers[open_index] = buffers.get(open_index, "") + delta["partial_json"]
            else:
                field = block["type"]
                block[field] += delta[field]
        elif name == "content_block_stop":
            assert payload["index"] == open_index
            if open_index in buffers:
                message["content"][open_index]["input"] = orjson.loads(buffers[open_index])
            open_index = None
        elif name == "message_delta":
            assert open_index is None
            message.update(payload["delta"], usage=payload["usage"])
    return message


def test_text_stream_golden() -> None:
    events = encode(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hello"}),
            chunk({"content": " there"}),
            chunk({}, "stop"),
            chunk(None, usage=USAGE),
        ]
    )
    assert events == [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_s1",
                    "type": "message",
                    "role": "assistant",
                    "model": "gpt-x",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": 0,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "output_tokens": 0,
                    },
                },
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hello"},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": " there"},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {
                    "input_tokens": 10,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 20,
                    "output_tokens": 9,
                },
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    assert check(events)["content"] == [{"type": "text", "text": "Hello there"}]


def test_message_id_falls_back_when_the_upstream_has_none() -> None:
    encoder = AnthropicStreamEncoder("msg_fallback", "fallback-model")
    first = encoder.chunk({"choices": []}) or b""
    assert b'"id":"msg_fallback"' in first and b'"model":"fallback-model"' in first


def test_thinking_then_text_get_separate_blocks() -> None:
    events = encode(
        [
            chunk({"role": "assistant", "reasoning_content": "Let me"}),
            chunk({"reasoning_content": " think."}),
            chunk({"content": "Answer."}),
            chunk({}, "stop"),
        ]
    )
    message = check(events)
    assert message["content"] == [
        {"type": "thinking", "thinking": "Let me think.", "signature": ""},
        {"type": "text", "text": "Answer."},
    ]


INTERLEAVED = [
    chunk({"role": "assistant", "content": None}),
    chunk(call(0, "", "call_a", "get_weather")),
    chunk(call(1, "", "call_b", "get_stock")),
    chunk(call(0, '{"ci')),
    chunk(call(1, '{"ti')),
    chunk(call(0, 'ty": "Paris"')),
    chunk(call(1, 'cker": ')),
    chunk(call(0, "}")),
    chunk(call(1, '"ACME"}')),
    chunk({}, "tool_calls"),
    chunk(None, usage=USAGE),
]


def test_interleaved_parallel_tool_calls_become_contiguous_blocks() -> None:
    events = encode(INTERLEAVED)
    message = check(events)
    assert message["content"] == [
        {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_b", "name": "get_stock", "input": {"ticker": "ACME"}},
    ]
    assert message["stop_reason"] == "tool_use"
    deltas = [
        (p["index"], p["delta"]["partial_json"]) for n, p in events if n == "content_block_delta"
    ]
    # Call 0 streams live; call 1 is held until call 0's JSON is complete, then its buffer is
    # flushed in one delta and the rest streams live.
    assert deltas == [
        (0, '{"ci'),
        (0, 'ty": "Paris"'),
        (0, "}"),
        (1, '{"ticker": '),
        (1, '"ACME"}'),
    ]


def test_sequential_tool_calls_stream_without_buffering() -> None:
    encoder = AnthropicStreamEncoder("msg_f", "m")
    encoder.chunk(chunk({"role": "assistant"}))
    encoder.chunk(chunk(call(0, '{"a": 1}', "call_a", "f")))
    second = encoder.chunk(chunk(call(1, '{"b"', "call_b", "g"))) or b""
    # The first call was complete, so the second starts at once (not at the end).
    assert b"content_block_stop" in second and b'"id":"call_b"' in second
    assert b'"partial_json":"{\\"b\\""' in second


def test_text_after_a_tool_call_is_held_until_the_tool_block_closes() -> None:
    events = encode(
        [
            chunk({"role": "assistant", "content": "Sure."}),
            chunk(call(0, '{"q": ', "call_a", "search")),
            chunk({"content": " One moment."}),
            chunk(call(0, '"x"}')),
            chunk({}, "tool_calls"),
        ]
    )
    assert check(events)["content"] == [
        {"type": "text", "text": "Sure."},
        {"type": "tool_use", "id": "call_a", "name": "search", "input": {"q": "x"}},
        {"type": "text", "text": " One moment."},
    ]


def test_missing_tool_ids_are_generated_and_empty_choices_are_harmless() -> None:
    events = encode(
        [
            chunk(None, prompt_filter_results=[]),  # Azure: a first chunk with no choices
            chunk({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "{}"}}]}),
            chunk({}, "stop"),
        ]
    )
    message = check(events)
    assert message["content"][0]["id"].startswith("toolu_")
    assert message["stop_reason"] == "tool_use"  # a host that says "stop" after calling a tool


@pytest.mark.parametrize(
    ("finish", "extra", "reason", "sequence"),
    [
        ("length", {}, "max_tokens", None),
        ("content_filter", {}, "refusal", None),
        ("stop", {"stop_reason": "END"}, "stop_sequence", "END"),
    ],
)
def test_stop_reasons(
    finish: str, extra: dict[str, Any], reason: str, sequence: str | None
) -> None:
    last = chunk({}, finish)
    last["choices"][0].update(extra)
    message = check(encode([chunk({"content": "x"}), last]))
    assert (message["stop_reason"], message["stop_sequence"]) == (reason, sequence)


def test_empty_stream_is_still_a_valid_message() -> None:
    message = check(encode([]))
    assert message["content"] == [] and message["stop_reason"] == "end_turn"


def test_error_after_start_is_an_error_event() -> None:
    encoder = AnthropicStreamEncoder("msg_f", "m")
    encoder.chunk(chunk({"content": "partial"}))
    for status, kind in ((503, "overloaded_error"), (502, "api_error")):
        error = ProviderError(status, "upstream went away", FailureClass.TRANSIENT)
        raw = encoder.error(error)
        assert raw.startswith(b"event: error\ndata: ") and raw.endswith(b"\n\n")
        body = orjson.loads(raw.split(b"data: ", 1)[1])
        assert body == {"type": "error", "error": {"type": kind, "message": "upstream went away"}}


def test_a_call_continued_after_completion_is_an_upstream_error() -> None:
    encoder = AnthropicStreamEncoder("msg_f", "m")
    encoder.chunk(chunk(call(0, '{"a": 1}', "call_a", "f")))
    encoder.chunk(chunk(call(1, "{}", "call_b", "g")))  # closes call 0: its JSON was complete
    encoder.chunk(chunk(call(0, "   ")))  # whitespace after the end is harmless
    with pytest.raises(ProviderError):
        encoder.chunk(chunk(call(0, ', "b": 2}')))
