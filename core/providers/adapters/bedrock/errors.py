"""Bedrock errors -> ProviderError with a failure class.

Non-stream errors name their type in the x-amzn-ErrorType header (sometimes with a
":<namespace>" suffix, sometimes only in the body's __type); stream errors arrive as exception
frames after a 200, with the type in lower camel case. Both go through one table.

ServiceQuotaExceededException is mapped to QUOTA_EXHAUSTED: it is an account quota (for example
tokens per day), so retrying the same target soon does not help, but another target may.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.errors import (
    FailureClass,
    ProviderError,
    error_payload,
    failure_class_for_status,
    upstream_error,
)

_CLASSES = {
    "throttlingexception": FailureClass.RATE_LIMIT,
    "toomanyrequestsexception": FailureClass.RATE_LIMIT,
    "servicequotaexceededexception": FailureClass.QUOTA_EXHAUSTED,
    "validationexception": FailureClass.CLIENT_ERROR,
    "resourcenotfoundexception": FailureClass.CLIENT_ERROR,
    "accessdeniedexception": FailureClass.AUTH,
    "unrecognizedclientexception": FailureClass.AUTH,
    "invalidsignatureexception": FailureClass.AUTH,
    "incompletesignatureexception": FailureClass.AUTH,
    "missingauthenticationtokenexception": FailureClass.AUTH,
    "expiredtokenexception": FailureClass.AUTH,
    "modelnotreadyexception": FailureClass.TRANSIENT,
    "serviceunavailableexception": FailureClass.TRANSIENT,
    "internalserverexception": FailureClass.TRANSIENT,
    "modelerrorexception": FailureClass.TRANSIENT,
    "modelstreamerrorexception": FailureClass.TRANSIENT,
    "modeltimeoutexception": FailureClass.TIMEOUT,
}
# Status to assume for an in-stream exception, which has no HTTP status of its own.
_STREAM_STATUS = {
    FailureClass.RATE_LIMIT: 429,
    FailureClass.QUOTA_EXHAUSTED: 429,
    FailureClass.CLIENT_ERROR: 400,
    FailureClass.AUTH: 403,
    FailureClass.TIMEOUT: 408,
}
_CONTEXT_HINTS = (
    "too long",
    "context length",
    "context window",
    "maximum context",
    "too many input tokens",
)
_CODES = {
    FailureClass.RATE_LIMIT: "rate_limit_exceeded",
    FailureClass.QUOTA_EXHAUSTED: "insufficient_quota",
    FailureClass.CONTEXT_LENGTH: "context_length_exceeded",
    FailureClass.AUTH: "upstream_auth_failed",
}


def error_type(headers: Mapping[str, str], payload: Any) -> str:
    raw = headers.get("x-amzn-errortype") or ""
    if not raw and isinstance(payload, dict):
        raw = str(payload.get("__type") or payload.get("code") or "")
    # "ThrottlingException:http://internal.amazon.com/..." or "com.amazon...#ThrottlingException"
    return raw.split(":", 1)[0].rsplit("#", 1)[-1].strip()


def _message(payload: Any) -> str:
    if isinstance(payload, dict):
        for key in ("message", "Message"):
            if isinstance(payload.get(key), str):
                return str(payload[key])
    return ""


def build_error(
    status: int,
    type_name: str,
    message: str,
    headers: Mapping[str, str],
) -> ProviderError:
    failure = _CLASSES.get(type_name.lower()) or failure_class_for_status(status)
    if failure is FailureClass.CLIENT_ERROR and any(h in message.lower() for h in _CONTEXT_HINTS):
        failure = FailureClass.CONTEXT_LENGTH
    param = "messages" if failure is FailureClass.CONTEXT_LENGTH else None
    # upstream_error drops an auth failure's words: an AWS auth message can name the key id.
    return upstream_error(
        status, failure, message, headers, code=_CODES.get(failure), param=param, detail=type_name
    )


def parse_http_error(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
    payload = error_payload(body)
    return build_error(status, error_type(headers, payload), _message(payload), headers)


def stream_exception(
    type_name: str | None, data: bytes, headers: Mapping[str, str]
) -> ProviderError:
    """An exception (or error) frame after a 200: the stream is over, say why."""
    payload = error_payload(data)
    message = _message(payload) or headers.get(":error-message", "")
    name = type_name or ""
    failure = _CLASSES.get(name.lower(), FailureClass.TRANSIENT)
    status = _STREAM_STATUS.get(
        failure, 503 if name.lower() == "serviceunavailableexception" else 502
    )
    return build_error(status, name, message, {})
