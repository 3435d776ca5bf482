"""Gemini error bodies ({error:{code,message,status,details}}) -> ProviderError.

Traps: an invalid AI Studio key is a 400 INVALID_ARGUMENT (not a 401), told apart only by the
ErrorInfo reason; a 429 carries its back-off in a RetryInfo detail rather than a header; and a
daily quota (QuotaFailure with a per-day quota id) will not clear by retrying in a minute.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from shared.errors import (
    FailureClass,
    ProviderError,
    error_payload,
    failure_class_for_status,
    upstream_error,
)

_STATUS_CLASSES = {
    "RESOURCE_EXHAUSTED": FailureClass.RATE_LIMIT,
    "UNAUTHENTICATED": FailureClass.AUTH,
    "PERMISSION_DENIED": FailureClass.AUTH,
    "UNAVAILABLE": FailureClass.TRANSIENT,
    "INTERNAL": FailureClass.TRANSIENT,
    "CANCELLED": FailureClass.TRANSIENT,
    "DEADLINE_EXCEEDED": FailureClass.TIMEOUT,
}
_CODES = {
    FailureClass.AUTH: "upstream_auth_failed",
    FailureClass.RATE_LIMIT: "rate_limit_exceeded",
    FailureClass.QUOTA_EXHAUSTED: "insufficient_quota",
    FailureClass.CONTEXT_LENGTH: "context_length_exceeded",
}
_CONTEXT = re.compile(
    r"input token count.*exceeds|exceeds the maximum number of tokens|context window", re.I
)
_AUTH_REASONS = frozenset({"CREDENTIALS_MISSING", "ACCESS_TOKEN_EXPIRED", "CONSUMER_INVALID"})
_DELAY = re.compile(r"^(\d+(?:\.\d+)?)s$")


def parse_error(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
    payload = error_payload(body)
    if isinstance(payload, list) and payload:  # the non-SSE stream endpoint wraps it in a list
        payload = payload[0]
    return error_from_payload(status, headers, payload)


def error_from_payload(status: int, headers: Mapping[str, str], payload: Any) -> ProviderError:
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        error = {}
    if isinstance(error.get("code"), int) and status < 400:
        status = error["code"]  # an error inside a 200 stream names its own code
    if status < 400:
        status = 500
    grpc_status = _string(error.get("status"))
    message = _string(error.get("message"))
    raw_details = error.get("details")
    details = (
        [d for d in raw_details if isinstance(d, dict)] if isinstance(raw_details, list) else []
    )
    failure = _STATUS_CLASSES.get(grpc_status) or failure_class_for_status(status)
    if _is_key_problem(details, message, status):
        failure = FailureClass.AUTH
    elif failure is FailureClass.RATE_LIMIT and _daily_quota(details):
        failure = FailureClass.QUOTA_EXHAUSTED
    elif failure is FailureClass.CLIENT_ERROR and _CONTEXT.search(message):
        failure = FailureClass.CONTEXT_LENGTH
    code = _CODES.get(failure) or (grpc_status.lower() or None)
    # upstream_error drops an auth failure's words: key problems can quote part of the key.
    return upstream_error(
        status, failure, message, headers, code=code, retry_after_s=_retry_delay(details)
    )


def _string(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _is_key_problem(details: list[dict[str, Any]], message: str, status: int) -> bool:
    for detail in details:
        reason = detail.get("reason")
        if isinstance(reason, str) and (reason.startswith("API_KEY_") or reason in _AUTH_REASONS):
            return True
    return status == 400 and "api key" in message.lower()


def _daily_quota(details: list[dict[str, Any]]) -> bool:
    for detail in details:
        violations = detail.get("violations")
        for violation in violations if isinstance(violations, list) else ():
            quota_id = violation.get("quotaId") if isinstance(violation, dict) else None
            if isinstance(quota_id, str) and "PerDay" in quota_id:
                return True
    return False


def _retry_delay(details: list[dict[str, Any]]) -> float | None:
    for detail in details:
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = _DELAY.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None
