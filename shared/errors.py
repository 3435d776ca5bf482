"""Every error a client can see, and how an upstream failure becomes one.

The hierarchy::

    Exception
    └── GatewayError      status, tenant-safe message, code, param, type, headers.
        │                 Raised by both tiers for what the gateway itself refuses (bad input,
        │                 credentials, limits, shared state down); rendered by `body_for(api)`.
        └── ProviderError + failure_class, retry_after_s, upstream_status, target, attempts,
                          sanitized. Core only: an upstream call that failed, already mapped to
                          the status the tenant sees. Adapters make it with the factories
                          below (transport, key pools and dispatch directly, for their own
                          failures); dispatch fills in `target` and `attempts`; core.providers.scrub
                          makes its text tenant-safe (`sanitized`) before anyone renders it.

Failure classes (`FailureClass`) say why an upstream call failed; core.resilience.retry decides
from them what happens next, and `client_status_for` what the tenant sees:

    class            client status                     resilience
    rate_limit       429                               other key, other target, retry last
    quota_exhausted  429                               other key, other target, never same key
    transient        503 for upstream 503/529, else 502 other target, retry last
    timeout          504                               other target, retry last
    auth             502 (operator's key, not tenant's) other key, other target
    context_length   the upstream 4xx (400 otherwise)  a larger-context target
    client_error     the upstream 4xx (400 otherwise)  returned at once
    content_filter   the upstream 4xx (400 otherwise)  returned at once

Envelopes follow the API the client called, never the provider's:

    openai     {"error": {"message", "type", "param", "code"}}, type from the status
               (_OPENAI_TYPES: 429 rate_limit_error, 502 upstream_error, 503
               service_unavailable, 408/504 timeout_error, other 5xx server_error, else
               invalid_request_error)
    anthropic  {"type": "error", "error": {"type", "message"}}, type from Anthropic's closed
               set (_ANTHROPIC_TYPES: 401 authentication_error, 413 request_too_large, 503/529
               overloaded_error, other 5xx api_error, ...)

Upstream words: a provider's message is written for the key's owner and can quote the key.
`upstream_error` (the one constructor the adapters use for provider error bodies) never keeps
the words of an auth failure; `withheld_message` is the one table of gateway-written sentences
that core.providers.scrub.sanitize puts in place of the provider's words for every failure the
tenant cannot fix (and scrubs the rest).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Literal, Protocol

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


class _Named(Protocol):
    @property
    def name(self) -> str: ...


class UpstreamTarget(Protocol):
    """What an error (and accounting) needs of a target: a core.providers.adapters.base.Target,
    described here by shape so that shared/ depends on neither tier."""

    @property
    def provider(self) -> _Named: ...

    @property
    def model(self) -> str: ...

    @property
    def label(self) -> str: ...


class ProviderError(GatewayError):
    """An upstream failure, already mapped to a client-facing status and a failure class."""

    def __init__(
        self,
        status: int,
        message: str,
        failure_class: FailureClass,
        *,
        code: str | None = None,
        param: str | None = None,
        type: str | None = None,
        retry_after_s: float | None = None,
        upstream_status: int | None = None,
    ) -> None:
        super().__init__(
            status, message, code=code, param=param, type=type, failure_class=failure_class
        )
        self.failure_class: FailureClass = failure_class
        self.retry_after_s = retry_after_s
        self.upstream_status = upstream_status
        # Filled in by dispatch for accounting: which target failed, after how many attempts.
        self.target: UpstreamTarget | None = None
        self.attempts = 1
        # Set by core.providers.scrub once the message, code, param and type are safe to show a
        # tenant.
        self.sanitized = False
        if retry_after_s is not None and status in (429, 503):
            # Clients (and the official SDKs' own retry loops) read this header.
            self.headers["retry-after"] = str(max(1, math.ceil(retry_after_s)))


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


# --- upstream failures: status mapping, the gateway's own sentences, and the factories ---


def failure_class_for_status(status: int) -> FailureClass:
    """The default mapping when a provider's body says nothing more specific."""
    if status == 429:
        return FailureClass.RATE_LIMIT
    if status in (401, 403):
        return FailureClass.AUTH
    if status in (408, 504):
        return FailureClass.TIMEOUT
    if status >= 500:
        return FailureClass.TRANSIENT
    return FailureClass.CLIENT_ERROR


def client_status_for(failure_class: FailureClass, upstream_status: int) -> int:
    """What the tenant sees: upstream auth problems are the operator's, not the tenant's."""
    if failure_class is FailureClass.AUTH:
        return 502
    if failure_class is FailureClass.TIMEOUT:
        return 504
    if failure_class is FailureClass.TRANSIENT:
        return 503 if upstream_status in (503, 529) else 502
    if failure_class in (FailureClass.RATE_LIMIT, FailureClass.QUOTA_EXHAUSTED):
        return 429
    if 400 <= upstream_status < 500:
        return upstream_status
    return 400


_OPENAI_CODES = {
    FailureClass.RATE_LIMIT: "rate_limit_exceeded",
    FailureClass.QUOTA_EXHAUSTED: "insufficient_quota",
    FailureClass.CONTEXT_LENGTH: "context_length_exceeded",
    FailureClass.CONTENT_FILTER: "content_filter",
    FailureClass.TIMEOUT: "upstream_timeout",
    FailureClass.TRANSIENT: "upstream_unavailable",
    FailureClass.AUTH: "upstream_auth_failed",
}


def openai_code_for(failure_class: FailureClass) -> str | None:
    """The `code` OpenAI clients expect for a failure, for providers whose own error codes
    mean nothing to them (Anthropic's `rate_limit_error` is not OpenAI's `rate_limit_exceeded`).
    Client errors keep no code: the message and param say what was wrong."""
    return _OPENAI_CODES.get(failure_class)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Retry-After (seconds form) or retry-after-ms; HTTP-date form is ignored (rare upstream)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw:
        try:
            return max(0.0, float(raw))
        except ValueError:
            return None
    return None


_WITHHELD = {
    FailureClass.RATE_LIMIT: "the upstream provider is rate limiting requests; retry shortly",
    FailureClass.QUOTA_EXHAUSTED: "the upstream provider's quota for this gateway is exhausted",
    FailureClass.TRANSIENT: "the upstream provider failed to process the request",
    FailureClass.TIMEOUT: "the upstream provider timed out",
    FailureClass.AUTH: "the upstream provider rejected the gateway's credentials",
}
OVERLOADED = "the upstream provider is overloaded or unavailable; retry shortly"


def withheld_message(failure_class: FailureClass, upstream_status: int | None) -> str | None:
    """The gateway's own sentence for a failure that is the operator's or the provider's
    business (the provider's words are withheld), or None when the tenant can fix it and the
    provider's words, scrubbed, are worth showing."""
    if failure_class is FailureClass.TRANSIENT and upstream_status in (503, 529):
        return OVERLOADED
    return _WITHHELD.get(failure_class)


def upstream_error(
    status: int,
    failure_class: FailureClass,
    message: str,
    headers: Mapping[str, str],
    *,
    code: str | None = None,
    param: str | None = None,
    retry_after_s: float | None = None,
    detail: str = "",
) -> ProviderError:
    """The ProviderError for a provider's error answer (HTTP `status`, or the status an
    in-stream error stands for): the client status follows the failure class, Retry-After
    comes from the headers (else `retry_after_s`, for providers that say it in the body), and
    an auth failure's words are never kept, since they can quote the key. An empty message
    becomes `upstream error (HTTP <status>[, <detail>])`."""
    if failure_class is FailureClass.AUTH:
        message = _WITHHELD[FailureClass.AUTH]
    elif not message:
        message = f"upstream error (HTTP {status}{', ' + detail if detail else ''})"
    retry = retry_after_seconds(headers)
    return ProviderError(
        client_status_for(failure_class, status),
        message,
        failure_class,
        code=code,
        param=param,
        retry_after_s=retry_after_s if retry is None else retry,
        upstream_status=status,
    )


def invalid_upstream(what: str) -> ProviderError:
    """A provider answer the gateway cannot read (`what` it returned instead): transient, since
    another sample or another target usually answers properly."""
    return ProviderError(502, f"upstream returned {what}", FailureClass.TRANSIENT)


def error_payload(body: bytes) -> Any:
    """A provider's error body as JSON, or {} when it is empty or not JSON (a proxy's HTML
    page, say): the status alone then decides the failure class."""
    try:
        return orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        return {}


def upstream_object(data: bytes, what: str, not_an_object: str | None = None) -> dict[str, Any]:
    """A provider's body or event as a JSON object; else `invalid_upstream(what)` (or
    `not_an_object`, when it is JSON but not an object)."""
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise invalid_upstream(what) from None
    if not isinstance(payload, dict):
        raise invalid_upstream(not_an_object or what)
    return payload


def upstream_string(
    mapping: dict[str, Any], key: str, what: str = "a {} that is not a string"
) -> str:
    """A field the wire format says is a string: "" when absent, else `invalid_upstream(what)`
    (`{}` in `what` names the key; formatted only on the error path)."""
    value = mapping.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise invalid_upstream(what.format(key))
    return value


def stream_incomplete() -> ProviderError:
    """A stream that ended without the provider's closing event."""
    return ProviderError(502, "upstream stream ended before completion", FailureClass.TRANSIENT)
