"""Golden tests: Gemini generateContent responses and error bodies -> canonical."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from core.providers.adapters.base import ProviderError, Target
from core.providers.adapters.gemini import ADAPTER
from core.providers.adapters.gemini.calls import signature_of, tool_call_id
from shared.config import ProviderConfig
from shared.errors import FailureClass
from tests.support.providers import provider_of

PROVIDER = ProviderConfig("gem", "gemini", None, ("k",), {}, None, True, {})
TARGET = Target(provider_of(PROVIDER), "gemini-2.5-flash", "k")
SIGNATURE = "EpwICpkIAXLI2nxlU6gsWZaZ+HRYkX1orzuM8vSUF/waAt1JRxEC2hJzPAcAu3PWaKz7X=="


def parse(payload: dict[str, Any]) -> dict[str, Any]:
    result = ADAPTER.parse_response(orjson.dumps(payload), TARGET)
    assert isinstance(result["created"], int)
    result.pop("created")
    return result


def usage(prompt: int, completion: int, total: int, cached: int = 0, reasoning: int = 0) -> Any:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def test_text_with_thoughts_and_cached_usage() -> None:
    payload = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "Considering.", "thought": True},
                        {"text": "The capital"},
                        {"text": " is Paris.", "thoughtSignature": "c2ln"},
                    ],
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 100,
            "cachedContentTokenCount": 64,
            "candidatesTokenCount": 6,
            "thoughtsTokenCount": 30,
            "totalTokenCount": 136,
        },
        "modelVersion": "gemini-2.5-flash-001",
        "responseId": "abc",
    }
    assert parse(payload) == {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "model": "gemini-2.5-flash-001",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "The capital is Paris.",
                    "reasoning_content": "Considering.",
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage(100, 36, 136, cached=64, reasoning=30),
    }


def test_function_calls_finish_as_tool_calls_and_carry_the_signature() -> None:
    payload = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {
                            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                            "thoughtSignature": SIGNATURE,
                        },
                        {"functionCall": {"name": "get_time"}},
                    ],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 29,
            "candidatesTokenCount": 10,
            "totalTokenCount": 39,
        },
        "responseId": "r1",
    }
    result = parse(payload)
    choice = result["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert result["model"] == "gemini-2.5-flash"  # no modelVersion: the target's model
    first, second = choice["message"]["tool_calls"]
    assert choice["message"]["content"] is None
    assert first == {
        "id": tool_call_id("r1", 0, 0, SIGNATURE),
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    assert signature_of(first) == SIGNATURE
    assert second["function"] == {"name": "get_time", "arguments": "{}"}
    assert signature_of(second) is None
    assert first["id"] != second["id"]
    assert parse(payload)["choices"][0]["message"]["tool_calls"] == [first, second]  # stable


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("IMAGE_SAFETY", "content_filter"),
        ("OTHER", "stop"),
        ("FINISH_REASON_UNSPECIFIED", "stop"),
    ],
)
def test_finish_reasons(reason: str, finish: str) -> None:
    payload = {"candidates": [{"content": {}, "finishReason": reason}]}
    choice = parse(payload)["choices"][0]
    assert choice["finish_reason"] == finish
    assert choice["message"] == {"role": "assistant", "content": None}


def test_safety_block_shape_as_recorded() -> None:
    # The shape of a real blocked answer: empty content, ratings, prompt-only usage.
    payload = {
        "candidates": [
            {
                "content": {},
                "finishReason": "SAFETY",
                "safetyRatings": [
                    {"blocked": True, "category": "HARM_CATEGORY_HATE_SPEECH", "probability": "LOW"}
                ],
            }
        ],
        "modelVersion": "gemini-1.5-flash",
        "responseId": "blocked1",
        "usageMetadata": {"promptTokenCount": 14, "totalTokenCount": 14},
    }
    result = parse(payload)
    assert result["choices"][0]["finish_reason"] == "content_filter"
    assert result["usage"] == usage(14, 0, 14)


def test_prompt_blocked_without_candidates_is_a_filtered_answer() -> None:
    payload = {
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
    }
    result = parse(payload)
    assert result["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": None},
            "logprobs": None,
            "finish_reason": "content_filter",
        }
    ]
    assert result["id"].startswith("chatcmpl-")


def test_several_candidates_become_choices() -> None:
    payload = {
        "candidates": [
            {"index": i, "content": {"parts": [{"text": f"answer {i}"}]}, "finishReason": "STOP"}
            for i in range(3)
        ]
    }
    choices = parse(payload)["choices"]
    assert [(c["index"], c["message"]["content"]) for c in choices] == [
        (0, "answer 0"),
        (1, "answer 1"),
        (2, "answer 2"),
    ]


@pytest.mark.parametrize(
    ("reason", "status", "failure"),
    [
        ("MALFORMED_FUNCTION_CALL", 502, FailureClass.TRANSIENT),
        ("UNEXPECTED_TOOL_CALL", 502, FailureClass.TRANSIENT),
        ("MISSING_THOUGHT_SIGNATURE", 400, FailureClass.CLIENT_ERROR),
    ],
)
def test_failed_generations_are_errors(reason: str, status: int, failure: FailureClass) -> None:
    with pytest.raises(ProviderError) as caught:
        parse({"candidates": [{"finishReason": reason, "finishMessage": "Malformed: f("}]})
    assert (caught.value.status, caught.value.failure_class) == (status, failure)
    assert caught.value.code == reason.lower()


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"candidates": []}', b"{}"])
def test_unusable_bodies_are_transient_502(body: bytes) -> None:
    with pytest.raises(ProviderError) as caught:
        ADAPTER.parse_response(body, TARGET)
    assert (caught.value.status, caught.value.failure_class) == (502, FailureClass.TRANSIENT)


# ---- errors --------------------------------------------------------------------------------


def error_body(code: int, status: str, message: str, details: list[Any] | None = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details is not None:
        error["details"] = details
    return orjson.dumps({"error": error})


RETRY = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "34.5s"}
DAILY = {
    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
    "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}],
}
KEY_INFO = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}


@pytest.mark.parametrize(
    ("status", "body", "client_status", "failure", "code"),
    [
        (
            429,
            error_body(429, "RESOURCE_EXHAUSTED", "Quota", [RETRY]),
            429,
            FailureClass.RATE_LIMIT,
            "rate_limit_exceeded",
        ),
        (
            429,
            error_body(429, "RESOURCE_EXHAUSTED", "Quota", [DAILY]),
            429,
            FailureClass.QUOTA_EXHAUSTED,
            "insufficient_quota",
        ),
        (
            400,
            error_body(400, "INVALID_ARGUMENT", "Bad temperature"),
            400,
            FailureClass.CLIENT_ERROR,
            "invalid_argument",
        ),
        (
            400,
            error_body(
                400,
                "INVALID_ARGUMENT",
                "The input token count (1200000) exceeds the maximum number of tokens "
                "allowed (1048576).",
            ),
            400,
            FailureClass.CONTEXT_LENGTH,
            "context_length_exceeded",
        ),
        (
            400,
            error_body(400, "INVALID_ARGUMENT", "API key not valid. AIzaSyX", [KEY_INFO]),
            502,
            FailureClass.AUTH,
            "upstream_auth_failed",
        ),
        (
            401,
            error_body(401, "UNAUTHENTICATED", "Bad token ya29.abc"),
            502,
            FailureClass.AUTH,
            "upstream_auth_failed",
        ),
        (
            403,
            error_body(403, "PERMISSION_DENIED", "Denied for key AIzaSyX"),
            502,
            FailureClass.AUTH,
            "upstream_auth_failed",
        ),
        (
            404,
            error_body(404, "NOT_FOUND", "models/x is not found"),
            404,
            FailureClass.CLIENT_ERROR,
            "not_found",
        ),
        (
            500,
            error_body(500, "INTERNAL", "Internal error"),
            502,
            FailureClass.TRANSIENT,
            "internal",
        ),
        (
            503,
            error_body(503, "UNAVAILABLE", "The model is overloaded."),
            503,
            FailureClass.TRANSIENT,
            "unavailable",
        ),
        (
            504,
            error_body(504, "DEADLINE_EXCEEDED", "Deadline expired"),
            504,
            FailureClass.TIMEOUT,
            "deadline_exceeded",
        ),
        (502, b"<html>Bad Gateway</html>", 502, FailureClass.TRANSIENT, None),
        (
            503,
            b"[" + error_body(503, "UNAVAILABLE", "overloaded") + b"]",
            503,
            FailureClass.TRANSIENT,
            "unavailable",
        ),
    ],
)
def test_error_mapping(
    status: int, body: bytes, client_status: int, failure: FailureClass, code: str | None
) -> None:
    error = ADAPTER.parse_error(status, {}, body)
    assert (error.status, error.failure_class, error.code) == (client_status, failure, code)
    assert error.upstream_status == status
    if failure is FailureClass.AUTH:
        assert "AIza" not in error.message and "ya29" not in error.message
    elif body.startswith(b"{"):
        assert error.message == orjson.loads(body)["error"]["message"]


def test_retry_after_from_retry_info_or_header() -> None:
    body = error_body(429, "RESOURCE_EXHAUSTED", "Quota", [RETRY])
    assert ADAPTER.parse_error(429, {}, body).retry_after_s == 34.5
    assert ADAPTER.parse_error(429, {"retry-after": "3"}, body).retry_after_s == 3.0
    assert (
        ADAPTER.parse_error(429, {}, error_body(429, "RESOURCE_EXHAUSTED", "q")).retry_after_s
        is None
    )
