"""Golden tests: Converse responses and Bedrock errors -> canonical shapes and failure classes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from core.providers.adapters.base import ProviderError, Target
from core.providers.adapters.bedrock import ADAPTER
from core.providers.adapters.bedrock.request import RESPONSE_TOOL
from core.providers.adapters.bedrock.response import convert_usage
from shared.config import ProviderConfig
from shared.errors import FailureClass
from tests.support.providers import provider_of

PROVIDER = ProviderConfig("aws", "bedrock", None, (), {}, None, False, {"region": "us-east-1"})
TARGET = Target(provider_of(PROVIDER), "us.anthropic.claude-sonnet-4-5-v1:0", None)


def parse(payload: dict[str, Any]) -> dict[str, Any]:
    result = ADAPTER.parse_response(orjson.dumps(payload), TARGET)
    assert result["id"].startswith("chatcmpl-") and isinstance(result["created"], int)
    return {k: v for k, v in result.items() if k not in ("id", "created")}


def converse(content: list[dict[str, Any]], stop: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "usage": usage,
        "metrics": {"latencyMs": 100},
    }


def test_text_with_cache_usage_golden() -> None:
    usage = {
        "inputTokens": 13,
        "outputTokens": 5,
        "totalTokens": 1622,
        "cacheReadInputTokens": 1504,
        "cacheWriteInputTokens": 100,
    }
    assert parse(converse([{"text": "Fi"}, {"text": "ve"}], "end_turn", usage)) == {
        "object": "chat.completion",
        "model": "us.anthropic.claude-sonnet-4-5-v1:0",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Five", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        # prompt_tokens includes cache reads and writes, as OpenAI counts them
        "usage": {
            "prompt_tokens": 1617,
            "completion_tokens": 5,
            "total_tokens": 1622,
            "prompt_tokens_details": {
                "cached_tokens": 1504,
                "cache_write_tokens": 100,
                "cache_creation_tokens": 100,
            },
        },
    }


def test_tool_use_and_reasoning_golden() -> None:
    content: list[dict[str, Any]] = [
        {"reasoningContent": {"reasoningText": {"text": "Need weather.", "signature": "s"}}},
        {"text": "Let me check."},
        {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}},
        {"toolUse": {"toolUseId": "tooluse_2", "name": "get_time", "input": {}}},
    ]
    result = parse(converse(content, "tool_use", {"inputTokens": 40, "outputTokens": 20}))
    assert result["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Let me check.",
                "refusal": None,
                "reasoning_content": "Need weather.",
                "tool_calls": [
                    {
                        "id": "tooluse_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "tooluse_2",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": "{}"},
                    },
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ]
    assert result["usage"]["prompt_tokens"] == 40 and result["usage"]["total_tokens"] == 60


def test_only_tool_calls_means_null_content() -> None:
    content = [{"toolUse": {"toolUseId": "t", "name": "f", "input": {"a": 1}}}]
    message = parse(converse(content, "tool_use", {}))["choices"][0]["message"]
    assert message["content"] is None and len(message["tool_calls"]) == 1


def test_response_format_tool_call_becomes_the_content() -> None:
    content = [{"toolUse": {"toolUseId": "t", "name": RESPONSE_TOOL, "input": {"answer": "42"}}}]
    [choice] = parse(converse(content, "tool_use", {}))["choices"]
    assert choice["message"]["content"] == '{"answer":"42"}'
    assert "tool_calls" not in choice["message"]
    assert choice["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("something_new", "stop"),
    ],
)
def test_stop_reasons(stop: str, finish: str) -> None:
    assert parse(converse([{"text": "x"}], stop, {}))["choices"][0]["finish_reason"] == finish


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", b'{"output": {}}', b'{"output": {"message": {}}}']
)
def test_malformed_bodies_are_transient_upstream_errors(body: bytes) -> None:
    with pytest.raises(ProviderError) as info:
        ADAPTER.parse_response(body, TARGET)
    assert info.value.status == 502 and info.value.failure_class is FailureClass.TRANSIENT


def aws_error(status: int, error_type: str, message: str, **extra: str) -> ProviderError:
    headers = {
        "x-amzn-errortype": f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/",
        "x-amzn-requestid": "r-1",
        **extra,
    }
    return ADAPTER.parse_error(status, headers, orjson.dumps({"message": message}))


@pytest.mark.parametrize(
    ("status", "error_type", "message", "client_status", "failure"),
    [
        (429, "ThrottlingException", "Too many requests", 429, FailureClass.RATE_LIMIT),
        (400, "ServiceQuotaExceededException", "quota", 429, FailureClass.QUOTA_EXHAUSTED),
        (400, "ValidationException", "temperature: must be <= 1", 400, FailureClass.CLIENT_ERROR),
        (
            400,
            "ValidationException",
            "Input is too long for requested model.",
            400,
            FailureClass.CONTEXT_LENGTH,
        ),
        (
            400,
            "ValidationException",
            "prompt is too long: 215000 tokens > 200000 maximum",
            400,
            FailureClass.CONTEXT_LENGTH,
        ),
        (404, "ResourceNotFoundException", "Model not found", 404, FailureClass.CLIENT_ERROR),
        (403, "AccessDeniedException", "User AKIDSECRET is not authorized", 502, FailureClass.AUTH),
        (
            403,
            "UnrecognizedClientException",
            "The security token is invalid",
            502,
            FailureClass.AUTH,
        ),
        (403, "InvalidSignatureException", "signature mismatch", 502, FailureClass.AUTH),
        (429, "ModelNotReadyException", "not ready", 502, FailureClass.TRANSIENT),
        (503, "ServiceUnavailableException", "unavailable", 503, FailureClass.TRANSIENT),
        (500, "InternalServerException", "boom", 502, FailureClass.TRANSIENT),
        (424, "ModelErrorException", "model failed", 502, FailureClass.TRANSIENT),
        (408, "ModelTimeoutException", "timed out", 504, FailureClass.TIMEOUT),
    ],
)
def test_http_errors(
    status: int, error_type: str, message: str, client_status: int, failure: FailureClass
) -> None:
    error = aws_error(status, error_type, message)
    assert (error.status, error.failure_class, error.upstream_status) == (
        client_status,
        failure,
        status,
    )
    if failure is FailureClass.AUTH:
        assert "AKID" not in error.message and error.message != message
        assert error.code == "upstream_auth_failed"
    else:
        assert error.message == message


def test_retry_after_and_context_code() -> None:
    assert (
        aws_error(429, "ThrottlingException", "slow", **{"retry-after": "3"}).retry_after_s == 3.0
    )
    context = aws_error(400, "ValidationException", "Input is too long for requested model.")
    assert (context.code, context.param) == ("context_length_exceeded", "messages")


def test_error_type_from_the_body_or_status_when_the_header_is_missing() -> None:
    from_body = ADAPTER.parse_error(
        400,
        {},
        orjson.dumps({"__type": "com.amazon.coral.validate#ThrottlingException", "message": "m"}),
    )
    assert from_body.failure_class is FailureClass.RATE_LIMIT
    bare = ADAPTER.parse_error(502, {}, b"<html>bad gateway</html>")
    assert bare.failure_class is FailureClass.TRANSIENT and bare.status == 502
    assert "502" in bare.message


def test_cache_writes_for_an_hour_are_told_apart() -> None:
    """TokenUsage.cacheDetails (1h before 5m) gives the part of the writes kept an hour."""
    usage = convert_usage(
        {
            "inputTokens": 10,
            "outputTokens": 5,
            "cacheReadInputTokens": 0,
            "cacheWriteInputTokens": 3000,
            "cacheDetails": [
                {"ttl": "1h", "inputTokens": 1800},
                {"ttl": "5m", "inputTokens": 1200},
            ],
        }
    )
    assert usage["prompt_tokens"] == 3010
    assert usage["prompt_tokens_details"]["cache_write_tokens"] == 3000
    assert usage["prompt_tokens_details"]["cache_creation_1h_tokens"] == 1800
    five = convert_usage({"inputTokens": 1, "outputTokens": 1, "cacheWriteInputTokens": 9})
    assert "cache_creation_1h_tokens" not in five["prompt_tokens_details"]
