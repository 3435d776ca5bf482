"""Anthropic targets get the client's own request: no translation, so nothing is lost.

Only `model` is rewritten (the body is re-serialized only when it changes). Answers are relayed
as they come; SSE events are decoded on the side to account usage and to notice an upstream
`error` event or a cut stream, which then ends with an Anthropic `event: error` instead of a
clean close. Events are re-framed whole (name and data bytes unchanged) rather than relayed as
raw writes, so an error appended after a cut never lands in the middle of a half-sent event.

Upstream errors keep their status and Anthropic error type, but never their words verbatim:
the envelope is re-written by the gateway with the message from core.scrub (a fixed sentence
for the operator's failures, the scrubbed provider message for the tenant's), and an upstream
`error` event mid-stream is replaced by the gateway's own. Auth failures are the operator's
problem and their messages can quote keys, so the client sees a masked 502. Failure classes
come from the anthropic adapter, so failover treats both paths alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
import orjson

from core.adapters.anthropic import ADAPTER
from core.adapters.anthropic.errors import TYPE_STATUS, parse_error, stream_error
from core.adapters.anthropic.response import canonical_usage
from core.adapters.base import JSON, ProviderError, StreamEvent, Target, UpstreamRequest
from core.messages.stream import error_event
from core.relay import UsageSink
from core.scrub import sanitize
from core.sse import SSEDecoder
from core.upstream import transport_error
from shared.errors import FailureClass, anthropic_error_body

TimeoutFor = Callable[[Target], aiohttp.ClientTimeout]


class RelayedError(ProviderError):
    """An upstream error whose own status and Anthropic body go to the client unchanged."""

    def __init__(self, error: ProviderError, status: int, body: bytes, retry_after: str | None):
        super().__init__(
            status,
            error.message,
            error.failure_class,
            code=error.code,
            retry_after_s=error.retry_after_s,
            upstream_status=status,
        )
        self.body = body
        if retry_after:
            self.headers["retry-after"] = retry_after


def _is_envelope(body: bytes) -> bool:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(payload, dict):
        return False
    error = payload.get("error")
    return (
        payload.get("type") == "error"
        and isinstance(error, dict)
        and isinstance(error.get("type"), str)
        and isinstance(error.get("message"), str)
    )


def upstream_error(
    status: int, headers: Mapping[str, str], body: bytes, target: Target
) -> ProviderError:
    """The upstream's status and error type are kept; its message only once scrubbed
    (core.scrub), and the envelope is re-written by the gateway, never relayed as bytes."""
    error = sanitize(parse_error(status, headers, body), target)
    if error.failure_class is FailureClass.AUTH or not _is_envelope(body):
        if error.failure_class is FailureClass.AUTH:
            error.type = "api_error"
        return error  # masked (auth) or synthesized in the gateway's Anthropic envelope
    kind = orjson.loads(body)["error"]["type"]
    safe = anthropic_error_body(status, error.message, kind if kind in TYPE_STATUS else None)
    relayed = RelayedError(error, status, safe, headers.get("retry-after"))
    relayed.sanitized = True
    return relayed


def build_request(
    target: Target, payload: JSON, raw: bytes, client_headers: Mapping[str, str]
) -> UpstreamRequest:
    settings = ADAPTER.settings(target.provider)
    headers = dict(settings.headers)
    version = client_headers.get("anthropic-version")
    if version:
        headers["anthropic-version"] = version
    beta = client_headers.get("anthropic-beta")
    if beta:
        flags = [f for f in headers.get("anthropic-beta", "").split(",") if f]
        flags += [f.strip() for f in beta.split(",") if f.strip() and f.strip() not in flags]
        headers["anthropic-beta"] = ",".join(flags)
    headers["accept"] = "text/event-stream" if payload.get("stream") else "application/json"
    if target.api_key:
        headers["x-api-key"] = target.api_key.reveal()
    body = (
        raw
        if payload["model"] == target.model
        else orjson.dumps({**payload, "model": target.model})
    )
    return UpstreamRequest("POST", settings.url, headers, body)


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


class Passthrough:
    def __init__(
        self, session: Callable[[], aiohttp.ClientSession], timeout_for: TimeoutFor
    ) -> None:
        self._session = session
        self._timeout_for = timeout_for

    async def _send(self, request: UpstreamRequest, target: Target) -> aiohttp.ClientResponse:
        try:
            return await self._session().request(
                request.method,
                request.url,
                data=request.body,
                headers=request.headers,
                timeout=self._timeout_for(target),
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise transport_error(exc) from None

    async def complete(
        self, target: Target, payload: JSON, raw: bytes, client_headers: Mapping[str, str]
    ) -> tuple[bytes, JSON | None]:
        """The upstream's Message bytes and its usage in canonical form (for accounting)."""
        response = await self._send(build_request(target, payload, raw, client_headers), target)
        try:
            body = await response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise transport_error(exc) from None
        finally:
            response.release()
        if response.status >= 400:
            raise upstream_error(response.status, _lowered(response.headers), body, target)
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ProviderError(
                502, "upstream returned a response that is not JSON", FailureClass.TRANSIENT
            ) from None
        usage = message.get("usage") if isinstance(message, dict) else None
        return body, canonical_usage(usage) if isinstance(usage, dict) else None

    async def open_stream(
        self, target: Target, payload: JSON, raw: bytes, client_headers: Mapping[str, str]
    ) -> PassthroughStream:
        """Returns once the first event is in hand, so failures before it can still fail over."""
        response = await self._send(build_request(target, payload, raw, client_headers), target)
        try:
            if response.status >= 400:
                body = await response.read()
                raise upstream_error(response.status, _lowered(response.headers), body, target)
            stream = PassthroughStream(response, target)
            await stream.prime()
        except (TimeoutError, aiohttp.ClientError) as exc:
            response.close()
            raise transport_error(exc) from None
        except BaseException:
            response.close()
            raise
        return stream


class PassthroughStream:
    __slots__ = ("_decoder", "_ended", "_error", "_first", "_response", "_target", "usage")

    def __init__(self, response: aiohttp.ClientResponse, target: Target) -> None:
        self._response = response
        self._target = target
        self._decoder = SSEDecoder()
        self._first: list[StreamEvent] = []
        self._ended = False  # message_stop seen
        self._error: ProviderError | None = None  # an upstream `error` event was relayed
        self.usage: JSON = {}  # Anthropic-shaped, cumulative

    async def prime(self) -> None:
        while not self._first:
            raw = await self._response.content.readany()
            if not raw:
                self._first = self._decoder.finish()
                if not self._first:
                    raise ProviderError(
                        502,
                        "the upstream closed the stream before sending an event",
                        FailureClass.TRANSIENT,
                    )
                break
            self._first = self._decoder.feed(raw)
        first = self._first[0]
        if first.event == "error":  # e.g. overloaded right after the 200: still fail over
            raise sanitize(stream_error(_loads(first.data)), self._target)

    async def relay(self, on_end: UsageSink) -> AsyncIterator[bytes]:
        outcome = "client_closed"
        try:
            events, self._first = self._first, []
            while True:
                out = self._frame(events)
                if out:
                    yield out
                if self._ended or self._error is not None:
                    break
                try:
                    raw = await self._response.content.readany()
                except (TimeoutError, aiohttp.ClientError) as exc:
                    self._error = transport_error(exc)
                    yield error_event(self._error)
                    break
                if raw:
                    events = self._decoder.feed(raw)
                    continue
                # An event left without its blank line at EOF counts only if it is whole JSON:
                # a cut can leave half an event, which must not reach the client.
                tail = [e for e in self._decoder.finish() if _loads(e.data) is not None]
                out = self._frame(tail)
                if out:
                    yield out
                if not self._ended and self._error is None:
                    self._error = ProviderError(
                        502, "the upstream stream ended before completion", FailureClass.TRANSIENT
                    )
                    yield error_event(self._error)
                break
            outcome = "ok" if self._error is None else f"cut:{self._error.failure_class}"
        finally:
            if self._ended:
                self._response.release()
            else:
                self._response.close()
            on_end(canonical_usage(self.usage) if self.usage else None, outcome)

    def _frame(self, events: list[StreamEvent]) -> bytes:
        parts: list[bytes] = []
        for event in events:
            name = event.event
            if name == "error":  # the upstream's words never reach the client unscrubbed
                self._error = sanitize(stream_error(_loads(event.data)), self._target)
                parts.append(error_event(self._error))
                break
            if name is not None:
                parts.append(b"event: " + name.encode() + b"\n")
            for line in event.data.split(b"\n"):
                parts.append(b"data: " + line + b"\n")
            parts.append(b"\n")
            if name in ("message_start", "message_delta"):
                self._observe(name, event.data)
            elif name == "message_stop":
                self._ended = True
            if self._ended or self._error is not None:
                break  # nothing after a terminal event reaches the client
        return b"".join(parts)

    def _observe(self, name: str, data: bytes) -> None:
        payload = _loads(data)
        if name == "message_start":
            message = payload.get("message") if isinstance(payload, dict) else None
            usage = message.get("usage") if isinstance(message, dict) else None
        else:
            usage = payload.get("usage") if isinstance(payload, dict) else None
        if isinstance(usage, dict):
            self.usage.update((k, v) for k, v in usage.items() if v is not None)


def _loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
