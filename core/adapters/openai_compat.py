"""OpenAI and every OpenAI-compatible host: the canonical shape is already theirs.

What still needs care: usage in streams only arrives when asked for (we always ask), hosts that
send an `error` object inside a 200 stream, and error bodies whose messages can echo a key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from core.adapters.base import (
    JSON,
    Capabilities,
    Framing,
    ProviderError,
    StreamEvent,
    Target,
    UpstreamRequest,
    client_status_for,
    failure_class_for_status,
    retry_after_seconds,
)
from core.sse import SSEDecoder
from shared.config import ProviderConfig
from shared.configparse import ConfigError
from shared.errors import FailureClass

_QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})
_CONTEXT_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
_FILTER_CODES = frozenset({"content_filter", "content_policy_violation"})


def invalid_upstream_body(what: str) -> ProviderError:
    return ProviderError(502, f"upstream returned {what}", FailureClass.TRANSIENT)


class OpenAIStreamParser:
    __slots__ = ("_done",)

    def __init__(self) -> None:
        self._done = False

    def feed(self, event: StreamEvent) -> list[JSON]:
        data = event.data
        if data == b"[DONE]":
            self._done = True
            return []
        if not data:
            return []
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise invalid_upstream_body("a malformed stream chunk") from None
        if not isinstance(chunk, dict):
            raise invalid_upstream_body("a malformed stream chunk")
        if "error" in chunk and "choices" not in chunk:
            raise error_from_payload(502, {}, chunk)
        return [chunk]

    def finish(self) -> list[JSON]:
        if not self._done:
            raise ProviderError(
                502, "upstream stream ended before completion", FailureClass.TRANSIENT
            )
        return []


def error_from_payload(status: int, headers: Mapping[str, str], payload: Any) -> ProviderError:
    """Map an OpenAI-style error object (from a body or a stream) to a ProviderError."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, str):
        error = {"message": error}
    if not isinstance(error, dict):
        error = {}
    code = error.get("code")
    code = str(code) if code is not None else None
    err_type = error.get("type") if isinstance(error.get("type"), str) else None
    message = error.get("message") if isinstance(error.get("message"), str) else ""
    failure = failure_class_for_status(status)
    if code in _QUOTA_CODES or err_type == "insufficient_quota":
        failure = FailureClass.QUOTA_EXHAUSTED
    elif code in _CONTEXT_CODES:
        failure = FailureClass.CONTEXT_LENGTH
    elif code in _FILTER_CODES:
        failure = FailureClass.CONTENT_FILTER
    if failure is FailureClass.AUTH:
        # Never relay the upstream's message: it can quote part of the operator's key.
        message = "the upstream provider rejected the gateway's credentials"
        code = "upstream_auth_failed"
    elif not message:
        message = f"upstream error (HTTP {status})"
    param = error.get("param") if isinstance(error.get("param"), str) else None
    return ProviderError(
        client_status_for(failure, status),
        message,
        failure,
        code=code,
        param=param,
        retry_after_s=retry_after_seconds(headers),
        upstream_status=status,
    )


class OpenAICompatAdapter:
    kind = "openai"
    framing: Framing = "sse"
    default_base_url = "https://api.openai.com/v1"

    def check_provider(self, provider: ProviderConfig) -> None:
        if provider.base_url is None and self.default_base_url is None:
            raise ConfigError(f"providers.{provider.name}.base_url: required")

    def capabilities(self, target: Target) -> Capabilities:
        return Capabilities()

    def decoder(self) -> SSEDecoder:
        return SSEDecoder()

    def make_signer(self, provider: ProviderConfig) -> None:
        return None

    def url(self, target: Target) -> str:
        base = target.provider.base_url or self.default_base_url
        return f"{base}/chat/completions"

    def auth_headers(self, target: Target) -> dict[str, str]:
        return {"authorization": f"Bearer {target.api_key}"} if target.api_key else {}

    def build_request(self, canonical: JSON, target: Target) -> UpstreamRequest:
        body = dict(canonical)
        body["model"] = target.model
        if body.get("stream"):
            options = dict(body.get("stream_options") or {})
            options["include_usage"] = True
            body["stream_options"] = options
        else:
            body.pop("stream_options", None)
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream" if body.get("stream") else "application/json",
            **target.provider.headers,
            **self.auth_headers(target),
        }
        return UpstreamRequest("POST", self.url(target), headers, orjson.dumps(body))

    def parse_response(self, body: bytes, target: Target) -> JSON:
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise invalid_upstream_body("a response that is not JSON") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("choices"), list):
            raise invalid_upstream_body("a response without choices")
        return payload

    def stream_parser(self, canonical: JSON, target: Target) -> OpenAIStreamParser:
        return OpenAIStreamParser()

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        try:
            payload = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            payload = {}
        return error_from_payload(status, headers, payload)


ADAPTER = OpenAICompatAdapter()
