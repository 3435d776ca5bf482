"""OpenAI and every OpenAI-compatible host: the canonical shape is already theirs.

What still needs care: usage in streams only arrives when asked for (we ask, unless the host's
preset says it sends usage unasked and rejects the option), hosts that send an `error` object
inside a 200 stream, error bodies whose messages can echo a key, and hosts that differ from
OpenAI in param names or accepted fields (see core.providers.adapters.presets).

Streams are normalised to the canonical contract, so no encoder ever meets a host quirk:
- chunks with empty `choices` and no usage (Azure prompt-filter results, annotations) are
  dropped: OpenAI clients only expect `choices: []` on the usage chunk they asked for, and
  naive client code indexes `choices[0]`;
- choices without a `delta` (Azure asynchronous-filter annotations) are dropped, unless they
  carry a finish_reason (e.g. `content_filter`), which passes through with `delta: {}`;
- usage riding on the finishing chunk (Mistral, Fireworks, Together) is split off into its
  own chunk with `choices: []`; usage on earlier chunks (running totals) is held back and only
  the last value is sent, at [DONE];
- chunks sent with an empty id/model (Azure annotations) get the stream's id and model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from core.providers.adapters.base import (
    JSON,
    Capabilities,
    StreamEvent,
    Target,
    UpstreamRequest,
    settings_of,
)
from core.providers.adapters.openai_settings import OpenAISettings, parse_settings
from core.providers.adapters.openai_shape import adopt_cache_hits, check_answer
from core.providers.adapters.presets import Preset
from core.wire.prompt_cache import strip as strip_marks
from core.wire.sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder
from shared.config import ProviderConfig
from shared.errors import (
    FailureClass,
    ProviderError,
    error_payload,
    failure_class_for_status,
    invalid_upstream,
    openai_code_for,
    stream_incomplete,
    upstream_error,
    upstream_object,
)

if TYPE_CHECKING:
    from core.providers.provider import Provider

_QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})
_CONTEXT_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
_FILTER_CODES = frozenset({"content_filter", "content_policy_violation"})


class OpenAIStreamParser:
    __slots__ = ("_created", "_done", "_id", "_model", "_pending_usage")

    def __init__(self) -> None:
        self._done = False
        self._id: Any = None
        self._model: Any = None
        self._created: Any = None
        self._pending_usage: Any = None

    def feed(self, event: StreamEvent) -> list[JSON]:
        data = event.data
        if data == b"[DONE]":
            self._done = True
            return self._flush_usage()
        if not data:
            return []
        chunk = upstream_object(data, "a malformed stream chunk")
        choices = chunk.get("choices")
        if "error" in chunk and choices is None:
            raise error_from_payload(502, {}, chunk)
        check_answer(chunk, "delta")
        adopt_cache_hits(chunk)
        return self.normalize(chunk, choices)

    def normalize(self, chunk: JSON, choices: Any) -> list[JSON]:
        if chunk.get("id"):
            if self._id is None:
                self._id, self._model, self._created = (
                    chunk["id"],
                    chunk.get("model"),
                    chunk.get("created"),
                )
        elif self._id is not None:
            chunk = {
                **chunk,
                "id": self._id,
                "model": chunk.get("model") or self._model,
                "created": chunk.get("created") or self._created,
                "object": "chat.completion.chunk",
            }
        if choices and not all(isinstance(c, dict) and "delta" in c for c in choices):
            kept = [
                c if "delta" in c else {**c, "delta": {}}
                for c in choices
                if isinstance(c, dict) and ("delta" in c or c.get("finish_reason"))
            ]
            chunk = {**chunk, "choices": kept}
            choices = kept
        usage = chunk.get("usage")
        if not choices:
            if usage is None:
                return []
            self._pending_usage = None
            return [chunk]
        if usage is None:
            return [chunk]
        head = {k: v for k, v in chunk.items() if k != "usage"}
        if not any(c.get("finish_reason") for c in choices):
            self._pending_usage = usage  # running totals: only the last one is kept
            return [head]
        self._pending_usage = None
        tail = {k: v for k, v in chunk.items() if k != "choices"}
        tail["choices"] = []
        return [head, tail]

    def _flush_usage(self) -> list[JSON]:
        usage, self._pending_usage = self._pending_usage, None
        if usage is None:
            return []
        return [
            {
                "id": self._id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": self._model,
                "choices": [],
                "usage": usage,
            }
        ]

    def finish(self) -> list[JSON]:
        if not self._done:
            raise stream_incomplete()
        return []


def _detail_message(detail: Any) -> str:
    """A readable line from a validation-error list (pydantic style, as Mistral returns)."""
    if isinstance(detail, dict):
        detail = detail.get("detail", detail)
    if not isinstance(detail, list):
        return ""
    parts = []
    for item in detail[:3]:
        if isinstance(item, dict):
            loc = item.get("loc")
            where = ".".join(str(p) for p in loc) if isinstance(loc, list | tuple) else ""
            msg = item.get("msg")
            if isinstance(msg, str):
                parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def error_from_payload(status: int, headers: Mapping[str, str], payload: Any) -> ProviderError:
    """Map an OpenAI-style error object (from a body or a stream) to a ProviderError.

    Also reads the flat shape some compatible hosts use (`{"object": "error", "message": ...,
    "type": ...}`), whose message may be a validation-error list rather than a string.
    """
    error = payload.get("error") if isinstance(payload, dict) else None
    if error is None and isinstance(payload, dict) and "message" in payload:
        error = payload
    if isinstance(error, str):
        error = {"message": error}
    if not isinstance(error, dict):
        error = {}
    code = error.get("code")
    code = str(code) if code is not None else None
    err_type = error.get("type") if isinstance(error.get("type"), str) else None
    raw_message = error.get("message")
    message = raw_message if isinstance(raw_message, str) else _detail_message(raw_message)
    failure = failure_class_for_status(status)
    if code in _QUOTA_CODES or err_type == "insufficient_quota":
        failure = FailureClass.QUOTA_EXHAUSTED
    elif code in _CONTEXT_CODES:
        failure = FailureClass.CONTEXT_LENGTH
    elif code in _FILTER_CODES:
        failure = FailureClass.CONTENT_FILTER
    if failure is FailureClass.AUTH:
        code = openai_code_for(failure)  # the host's own code would say nothing to a tenant
    param = error.get("param") if isinstance(error.get("param"), str) else None
    # upstream_error drops an auth failure's words: they can quote part of the operator's key.
    return upstream_error(status, failure, message, headers, code=code, param=param)


def _drop_message_keys(messages: Any, keys: frozenset[str]) -> Any:
    if not isinstance(messages, list):
        return messages
    out = []
    for message in messages:
        if (
            isinstance(message, dict)
            and message.get("role") != "tool"
            and not keys.isdisjoint(message)
        ):
            message = {k: v for k, v in message.items() if k not in keys}
        out.append(message)
    return out


class OpenAICompatAdapter:
    kind = "openai"

    def settings(self, provider: Provider) -> OpenAISettings:
        return settings_of(provider, OpenAISettings)

    def preset(self, provider: Provider) -> Preset:
        return self.settings(provider).preset

    def check_provider(self, provider: ProviderConfig) -> object:
        return parse_settings(provider)

    def capabilities(self, target: Target) -> Capabilities:
        return self.settings(target.provider).capabilities

    def decoder(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> SSEDecoder:
        return SSEDecoder(max_event_bytes)

    def make_signer(self, settings: object) -> None:
        return None

    def url(self, target: Target) -> str:
        return self.settings(target.provider).url

    def auth_headers(self, target: Target) -> dict[str, str]:
        if not target.api_key:
            return {}
        preset = self.preset(target.provider)
        return {preset.auth_header: f"{preset.auth_prefix}{target.api_key.reveal()}"}

    def ask_stream_usage(self, target: Target) -> bool:
        return self.preset(target.provider).stream_usage == "ask"

    def takes_cache_key(self, target: Target) -> bool:
        """Whether the host takes `prompt_cache_key` (else it is withheld), as declared in the
        target's capabilities (core.pipeline.prompt_cache reads the same declaration)."""
        support = self.capabilities(target).prompt_cache
        return support is not None and support.key

    def adapt_body(self, body: JSON, target: Target) -> None:
        """Host-specific edits to the outgoing body, in place (renames, refused fields)."""
        preset = self.preset(target.provider)
        for old, new in preset.renames:
            if old in body:
                body[new] = body.pop(old)
        if preset.drop_message_keys:
            body["messages"] = _drop_message_keys(body.get("messages"), preset.drop_message_keys)
        n = body.get("n")
        if preset.max_n is not None and isinstance(n, int) and n > preset.max_n:
            raise ProviderError(
                400,
                f"{target.label} supports at most n={preset.max_n}",
                FailureClass.CLIENT_ERROR,
                code="unsupported_parameter",
                param="n",
            )

    def build_request(self, canonical: JSON, target: Target) -> UpstreamRequest:
        # These hosts cache prefixes by themselves: no mark reaches them (core.wire.prompt_cache);
        # the tenant-scoped prompt_cache_key (core.pipeline.prompt_cache) only where taken.
        body = dict(strip_marks(canonical))
        if "prompt_cache_key" in body and not self.takes_cache_key(target):
            del body["prompt_cache_key"]
        body["model"] = target.model
        stream = bool(body.get("stream"))
        if stream and self.ask_stream_usage(target):
            options = dict(body.get("stream_options") or {})
            options["include_usage"] = True
            body["stream_options"] = options
        else:
            body.pop("stream_options", None)
        self.adapt_body(body, target)
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
            **target.provider.headers,
            **self.auth_headers(target),
        }
        return UpstreamRequest("POST", self.url(target), headers, orjson.dumps(body))

    def parse_response(self, body: bytes, target: Target) -> JSON:
        payload = upstream_object(body, "a response that is not JSON", "a response without choices")
        if not isinstance(payload.get("choices"), list):
            raise invalid_upstream("a response without choices")
        check_answer(payload, "message")
        adopt_cache_hits(payload)
        return payload

    def stream_parser(self, canonical: JSON, target: Target) -> OpenAIStreamParser:
        return OpenAIStreamParser()

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        payload = error_payload(body)
        return error_from_payload(status, headers, payload)


ADAPTER = OpenAICompatAdapter()
