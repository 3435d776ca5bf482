"""Error classes and the client-facing error envelopes.

Every failure a client sees goes through here, so the body always matches the API the client
called (OpenAI or Anthropic) and never carries a stack trace or a secret.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

import orjson

Api = Literal["openai", "anthropic"]


class FailureClass(StrEnum):
    """Why an upstream call failed; the resilience layer decides retry/failover from this."""

    RATE_LIMIT = "rate_limit"
    QUOTA_EXHAUSTED = "quota_exhausted"
    TRANSIENT = "transient"
    TIMEOUT = "timeout"
    AUTH = "auth"
    CLIENT_ERROR = "client_error"
    CONTEXT_LENGTH = "context_length"
    CONTENT_FILTER = "content_filter"


_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    408: "timeout_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout_error",
}

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


class GatewayError(Exception):
    """A failure with everything needed to render it for any client API.

    `message` must be safe to show a tenant: it names the problem (and the field, via `param`)
    but never echoes secrets or internal details.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type: str | None = None,
        failure_class: FailureClass | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type
        self.failure_class = failure_class
        self.headers = headers or {}

    def openai_body(self) -> bytes:
        return openai_error_body(self.status, self.message, self.code, self.param, self.type)

    def anthropic_body(self) -> bytes:
        return anthropic_error_body(self.status, self.message, self.type)

    def body_for(self, api: Api) -> bytes:
        return self.anthropic_body() if api == "anthropic" else self.openai_body()


def openai_error_type(status: int) -> str:
    return _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def anthropic_error_type(status: int) -> str:
    return _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def openai_error_body(
    status: int,
    message: str,
    code: str | None = None,
    param: str | None = None,
    type: str | None = None,
) -> bytes:
    return orjson.dumps(
        {
            "error": {
                "message": message,
                "type": type or openai_error_type(status),
                "param": param,
                "code": code,
            }
        }
    )


def anthropic_error_body(status: int, message: str, type: str | None = None) -> bytes:
    # Anthropic's error types are a closed set; map ours onto it rather than leaking new ones.
    anthropic_type = type if type in _ANTHROPIC_TYPES.values() else anthropic_error_type(status)
    return orjson.dumps({"type": "error", "error": {"type": anthropic_type, "message": message}})


def bad_request(message: str, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(400, message, param=param, code=code)
