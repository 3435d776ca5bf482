"""Anthropic error bodies and in-stream `error` events -> ProviderError with a failure class.

Two distinctions matter for resilience: 529 overloaded is transient (retry or fail over), while
an exhausted credit balance or spend limit is a quota problem that retrying cannot fix, even
when it arrives as a 400 or 429. Authentication messages are never relayed: they can quote keys
(shared.errors.upstream_error drops them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.errors import (
    FailureClass,
    ProviderError,
    error_payload,
    failure_class_for_status,
    openai_code_for,
    upstream_error,
)

# The HTTP status Anthropic pairs with each error type; used for errors inside a 200 stream.
TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

_QUOTA_HINTS = ("credit balance", "billing", "spend limit", "usage limit")
_CONTEXT_HINTS = ("prompt is too long", "exceed context limit", "context window")


def _classify(status: int, error_type: str | None, message: str) -> FailureClass:
    lowered = message.lower()
    if status == 529 or error_type == "overloaded_error":
        return FailureClass.TRANSIENT
    if error_type == "billing_error" or (
        status < 500 and any(hint in lowered for hint in _QUOTA_HINTS)
    ):
        return FailureClass.QUOTA_EXHAUSTED
    if status == 400 and any(hint in lowered for hint in _CONTEXT_HINTS):
        return FailureClass.CONTEXT_LENGTH
    return failure_class_for_status(status)


def error_from_payload(status: int, headers: Mapping[str, str], payload: Any) -> ProviderError:
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        error = {}
    raw_type, raw_message = error.get("type"), error.get("message")
    error_type = raw_type if isinstance(raw_type, str) else None
    message = raw_message if isinstance(raw_message, str) else ""
    failure = _classify(status, error_type, message)
    return upstream_error(status, failure, message, headers, code=openai_code_for(failure))


def parse_error(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
    payload = error_payload(body)
    return error_from_payload(status, headers, payload)


def stream_error(payload: Any) -> ProviderError:
    """An `error` event after the 200: its type stands in for the status it would have had."""
    error = payload.get("error") if isinstance(payload, dict) else None
    error_type = error.get("type") if isinstance(error, dict) else None
    status = TYPE_STATUS.get(error_type, 500) if isinstance(error_type, str) else 500
    return error_from_payload(status, {}, payload)
