"""Golden tests: Anthropic Message bodies and error bodies -> canonical results and errors."""

from __future__ import annotations

from typing import Any

import openai.types.chat as oa
import orjson
import pytest

from core.providers.adapters.anthropic import ADAPTER
from core.providers.adapters.base import ProviderError, Target, openai_code_for
from shared.config import ProviderConfig
from shared.errors import FailureClass
from tests.support.providers import provider_of

PROVIDER = ProviderConfig("claude", "anthropic", None, ("k",), {}, None, True, {})
TARGET = Target(provider_of(PROVIDER), "claude-sonnet-4-5", "k")


def message(content: list[dict[str, Any]], stop: str = "end_turn", **usage: Any) -> bytes:
    return orjson.dumps(
        {
            "id": "msg_01Abc",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 5, **usage},
        }
    )


def parse(body: bytes) -> dict[str, Any]:
    result = ADAPTER.parse_response(body, TARGET)
    oa.ChatCompletion.model_validate(result)  # the shape the OpenAI SDK will parse
    return result


def test_text_response() -> None:
    result = parse(message([{"type": "text", "text": "Hello"}, {"type": "text", "text": "!"}]))
    assert result["id"] == "msg_01Abc"
    assert result["object"] == "chat.completion"
    assert result["model"] == "claude-sonnet-4-5-20250929"
    assert result["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello!", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert result["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "prompt_tokens_details": {
            "cached_tokens": 0,
            "cache_write_tokens": 0,
            "cache_creation_tokens": 0,
        },
    }


def test_tool_use_response_after_text() -> None:
    body = message(
        [
            {"type": "text", "text": "Let me check."},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
            {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
        ],
        stop="tool_use",
    )
    choice = parse(body)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."
    assert choice["message"]["tool_calls"] == [
        {
            "id": "toolu_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        },
        {"id": "toolu_2", "type": "function", "function": {"name": "now", "arguments": "{}"}},
    ]
    only_tool = parse(
        message([{"type": "tool_use", "id": "t", "name": "f", "input": {}}], stop="tool_use")
    )
    assert only_tool["choices"][0]["message"]["content"] is None


def test_thinking_response_keeps_reasoning_and_signature() -> None:
    body = message(
        [
            {"type": "thinking", "thinking": "Step one.", "signature": "sig=="},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "text", "text": "Answer"},
        ],
        output_tokens_details={"thinking_tokens": 3},
    )
    result = parse(body)
    msg = result["choices"][0]["message"]
    assert msg["content"] == "Answer"
    assert msg["reasoning_content"] == "Step one."
    assert msg["thinking_blocks"] == [
        {"type": "thinking", "thinking": "Step one.", "signature": "sig=="},
        {"type": "redacted_thinking", "data": "opaque"},
    ]
    assert result["usage"]["completion_tokens_details"] == {"reasoning_tokens": 3}


def test_cache_usage_is_added_to_prompt_tokens() -> None:
    body = message(
        [{"type": "text", "text": "x"}],
        input_tokens=3,
        output_tokens=33,
        cache_read_input_tokens=1111,
        cache_creation_input_tokens=418,
    )
    assert parse(body)["usage"] == {
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
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
    ],
)
def test_stop_reasons(stop: str, finish: str) -> None:
    body = message([{"type": "text", "text": "x"}], stop=stop)
    assert parse(body)["choices"][0]["finish_reason"] == finish


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"type": "message"}'])
def test_malformed_bodies_are_transient_502(body: bytes) -> None:
    with pytest.raises(ProviderError) as info:
        ADAPTER.parse_response(body, TARGET)
    assert info.value.status == 502
    assert info.value.failure_class is FailureClass.TRANSIENT


def error_body(error_type: str, text: str) -> bytes:
    return orjson.dumps(
        {"type": "error", "error": {"type": error_type, "message": text}, "request_id": "req_1"}
    )


@pytest.mark.parametrize(
    ("status", "error_type", "text", "failure", "client_status"),
    [
        (429, "rate_limit_error", "Number of requests exceeded", FailureClass.RATE_LIMIT, 429),
        (529, "overloaded_error", "Overloaded", FailureClass.TRANSIENT, 503),
        (500, "api_error", "Internal server error", FailureClass.TRANSIENT, 502),
        (503, "api_error", "Unavailable", FailureClass.TRANSIENT, 503),
        (
            400,
            "invalid_request_error",
            "max_tokens: Field required",
            FailureClass.CLIENT_ERROR,
            400,
        ),
        (
            400,
            "invalid_request_error",
            "prompt is too long: 215337 tokens > 200000 maximum",
            FailureClass.CONTEXT_LENGTH,
            400,
        ),
        (
            400,
            "invalid_request_error",
            "Your credit balance is too low to access the Anthropic API.",
            FailureClass.QUOTA_EXHAUSTED,
            429,
        ),
        (
            429,
            "rate_limit_error",
            "You have reached your specified spend limit.",
            FailureClass.QUOTA_EXHAUSTED,
            429,
        ),
        (402, "billing_error", "Payment required", FailureClass.QUOTA_EXHAUSTED, 429),
        (
            413,
            "request_too_large",
            "Request exceeds the maximum size",
            FailureClass.CLIENT_ERROR,
            413,
        ),
        (404, "not_found_error", "model: claude-nope", FailureClass.CLIENT_ERROR, 404),
        (504, "timeout_error", "Request timed out", FailureClass.TIMEOUT, 504),
    ],
)
def test_error_mapping(
    status: int,
    error_type: str,
    text: str,
    failure: FailureClass,
    client_status: int,
) -> None:
    error = ADAPTER.parse_error(status, {}, error_body(error_type, text))
    assert error.failure_class is failure
    assert error.status == client_status
    assert error.upstream_status == status
    assert error.message == text
    # OpenAI clients get OpenAI's codes (rate_limit_exceeded, insufficient_quota, ...), not
    # Anthropic's error types; client errors carry none (message and status say it).
    assert error.code == openai_code_for(failure)


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_are_masked(status: int) -> None:
    body = error_body("authentication_error", "invalid x-api-key: sk-ant-api03-SECRET")
    error = ADAPTER.parse_error(status, {}, body)
    assert error.failure_class is FailureClass.AUTH
    assert error.status == 502
    assert "sk-ant" not in error.message and "SECRET" not in error.message
    assert error.code == "upstream_auth_failed"


def test_retry_after_is_honoured() -> None:
    error = ADAPTER.parse_error(429, {"retry-after": "7"}, error_body("rate_limit_error", "slow"))
    assert error.retry_after_s == 7.0
    overloaded = ADAPTER.parse_error(529, {"retry-after": "2"}, error_body("overloaded_error", ""))
    assert overloaded.retry_after_s == 2.0
    assert overloaded.message == "upstream error (HTTP 529)"


def test_non_json_error_body() -> None:
    error = ADAPTER.parse_error(502, {}, b"<html>Bad gateway</html>")
    assert error.failure_class is FailureClass.TRANSIENT
    assert error.status == 502
    assert "html" not in error.message
