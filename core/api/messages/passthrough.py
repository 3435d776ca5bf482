"""Anthropic targets get the client's own request: no translation, so nothing is lost.

Only `model` is rewritten (the body is re-serialized only when it changes). Answers are relayed
as they come; SSE events are decoded on the side to account usage and to notice an upstream
`error` event or a cut stream, which then ends with an Anthropic `event: error` instead of a
clean close. Events are re-framed whole (name and data bytes unchanged) rather than relayed as
raw writes, so an error appended after a cut never lands in the middle of a half-sent event.
The one event whose data changes is `message_delta`: its usage gains `interlock_cost`, the
price of the stream's cumulative usage, exactly as translated streams carry it
(core.spend.quote.with_cost, the one implementation for every stream).

Upstream errors keep their status and Anthropic error type, but never their words verbatim:
the envelope is re-written by the gateway with the message from core.providers.scrub (a fixed
sentence for the operator's failures, the scrubbed provider message for the tenant's), and an
upstream `error` event mid-stream is replaced by the gateway's own. Auth failures are the operator's
problem and their messages can quote keys, so the client sees a masked 502. Failure classes
come from the anthropic adapter, so failover treats both paths alike.

Prompt-cache marks are the client's own, within the model's limits: the same selection as
for every target (core.wire.prompt_cache: four breakpoints, the model's minimum prefix, 1-hour
entries first), so a fifth breakpoint or a mark Anthropic would ignore is removed before
sending and named in x-interlock-cache-dropped instead of failing or being silently ignored
upstream. A request whose marks are all kept is sent as the client's bytes.

Sending is the provider's Transport (core.providers.transport), as for every other call: the same
timeouts, transport-error mapping and scrubbing, and every read of a relayed stream bounded by
the stream idle timeout, so a stalled upstream ends with an `event: error`, never a hang.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from core.api.messages.stream import error_event
from core.api.relay import UsageSink, relay_events
from core.providers.adapters.anthropic import ADAPTER
from core.providers.adapters.anthropic.client_request import client_request
from core.providers.adapters.anthropic.errors import TYPE_STATUS, parse_error, stream_error
from core.providers.adapters.anthropic.response import canonical_usage
from core.providers.adapters.base import JSON, ProviderError, StreamEvent, Target, UpstreamRequest
from core.providers.parsing import guarded_error_parser, parsing
from core.providers.scrub import sanitize
from core.providers.transport import UpstreamBody
from core.spend.quote import CostOf, with_cost
from core.wire.sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder
from shared.errors import FailureClass, anthropic_error_body, invalid_upstream, upstream_object


class RelayedError(ProviderError):
    """An upstream error whose own status and Anthropic body go to the client unchanged."""

    def __init__(
        self, error: ProviderError, status: int, kind: str | None, retry_after: str | None
    ) -> None:
        super().__init__(
            status,
            error.message,
            error.failure_class,
            code=error.code,
            retry_after_s=error.retry_after_s,
            upstream_status=status,
        )
        self.kind = kind
        if retry_after:
            self.headers["retry-after"] = retry_after

    @property
    def body(self) -> bytes:
        """The gateway's own envelope around the message, which core.providers.scrub has made
        safe."""
        return anthropic_error_body(self.status, self.message, self.kind)


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


def parse_upstream_error(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
    """The transport's error parser for passthrough (pure; the transport scrubs the result):
    the upstream's status and error type are kept, its message only once scrubbed, and the
    envelope is re-written by the gateway, never relayed as bytes."""
    error = parse_error(status, headers, body)
    if error.failure_class is FailureClass.AUTH:
        error.type = "api_error"  # masked: the operator's credentials, never the tenant's
        return error
    if not _is_envelope(body):
        return error  # synthesized in the gateway's Anthropic envelope
    kind = orjson.loads(body)["error"]["type"]
    return RelayedError(
        error, status, kind if kind in TYPE_STATUS else None, headers.get("retry-after")
    )


_ERROR_PARSER = guarded_error_parser(parse_upstream_error)


def upstream_error(
    status: int, headers: Mapping[str, str], body: bytes, target: Target
) -> ProviderError:
    """`parse_upstream_error`, scrubbed with the target's keys (core.providers.scrub)."""
    return sanitize(parse_upstream_error(status, headers, body), target)


def build_request(
    target: Target, payload: JSON, raw: bytes, client_headers: Mapping[str, str]
) -> UpstreamRequest:
    settings = ADAPTER.settings(target.provider)
    accept = "text/event-stream" if payload.get("stream") else "application/json"
    return client_request(target, settings, (payload, raw), client_headers, (settings.url, accept))


def message_usage(body: bytes) -> JSON | None:
    """A relayed Message's usage in canonical form; the body must be a Message to be relayed."""
    message = upstream_object(body, "a response that is not JSON", "a response without content")
    if not isinstance(message.get("content"), list):
        raise invalid_upstream("a response without content")
    usage = message.get("usage")
    return canonical_usage(usage) if isinstance(usage, dict) else None


class Passthrough:
    """Sends through the target's provider's transport, like every other call; stream events
    are capped at `max_event_bytes` (core.resilience.max_event_bytes)."""

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._max_event_bytes = max_event_bytes

    async def complete(
        self, target: Target, payload: JSON, raw: bytes, client_headers: Mapping[str, str]
    ) -> tuple[bytes, JSON | None]:
        """The upstream's Message bytes and its usage in canonical form (for accounting)."""
        request = build_request(target, payload, raw, client_headers)
        _, body = await target.provider.transport.fetch(request, target, _ERROR_PARSER)
        with parsing(target):
            return body, message_usage(body)

    async def open_stream(
        self, target: Target, payload: JSON, raw: bytes, client_headers: Mapping[str, str]
    ) -> PassthroughStream:
        """Returns once the first event is in hand, so failures before it can still fail over."""
        request = build_request(target, payload, raw, client_headers)
        body = await target.provider.transport.open(request, target, _ERROR_PARSER)
        stream = PassthroughStream(body, target, SSEDecoder(self._max_event_bytes))
        try:
            await stream.prime()
        except BaseException:
            body.close()
            raise
        return stream


class PassthroughStream:
    """Upstream data that is not the wire format (core.providers.parsing) fails over before the
    first event and ends the relay with an error event after it, like a cut."""

    __slots__ = (
        "_body",
        "_canonical",
        "_cost_of",
        "_decoder",
        "_ended",
        "_error",
        "_first",
        "_target",
        "usage",
    )

    def __init__(
        self, body: UpstreamBody, target: Target, decoder: SSEDecoder | None = None
    ) -> None:
        self._body = body
        self._target = target
        self._decoder = decoder or SSEDecoder()
        self._first: list[StreamEvent] = []
        self._ended = False  # message_stop seen
        self._error: ProviderError | None = None  # an upstream `error` event was relayed
        self.usage: JSON = {}  # Anthropic-shaped, cumulative
        self._cost_of: CostOf | None = None
        # `usage` in canonical form, as last priced (None once `usage` changes): the stream's
        # end hands this same object to accounting, which then reuses the price shown.
        self._canonical: JSON | None = None

    async def prime(self) -> None:
        """Reads to the first event; raises ProviderError (scrubbed) if it is an error or the
        upstream fails first: the dispatcher can still fail over."""
        try:
            with parsing(self._target):
                self._first = await self._body.first_events(self._decoder)
                first = self._first[0]
                if first.event == "error":  # e.g. overloaded right after the 200: fail over
                    raise stream_error(_loads(first.data))
        except ProviderError as error:
            raise sanitize(error, self._target) from None

    async def relay(self, on_end: UsageSink, cost_of: CostOf | None = None) -> AsyncIterator[bytes]:
        """The events, re-framed; `cost_of` prices the usage message_delta shows."""
        self._cost_of = cost_of
        outcome = "cancelled"
        try:
            first, self._first = self._first, []
            async for out in relay_events(self._body, self._decoder, self._target, first, self):
                yield out
            outcome = "ok" if self._error is None else f"cut:{self._error.failure_class}"
        finally:
            if self._ended:
                self._body.release()
            else:
                self._body.close()
            on_end(self._canonical_usage(), outcome, self._error)

    def _canonical_usage(self) -> JSON | None:
        if self._canonical is None and self.usage:
            self._canonical = canonical_usage(self.usage)
        return self._canonical

    def _fail(self, error: ProviderError) -> bytes:
        self._error = sanitize(error, self._target)
        return error_event(self._error)

    # The steps core.api.relay.relay_events takes.
    def framed(self, events: list[StreamEvent]) -> bytes:
        return self._framed(events)

    def over(self) -> bool:
        return self._ended or self._error is not None

    def failed(self, error: ProviderError) -> bytes:
        return self._fail(error)

    def unfinished(self) -> bytes:
        return self._framed_tail()

    def _framed(self, events: list[StreamEvent]) -> bytes:
        try:
            with parsing(self._target):
                return self._frame(events)
        except ProviderError as error:
            return self._fail(error)

    def _framed_tail(self) -> bytes:
        """At EOF: an event left without its blank line counts only if it is whole JSON (a cut
        can leave half an event, which must not reach the client); then, unless the message
        ended, the error event that says the stream was cut."""
        try:
            with parsing(self._target):
                tail = [e for e in self._decoder.finish() if _loads(e.data) is not None]
        except ProviderError as error:
            return self._fail(error)
        out = self._framed(tail)
        if not self._ended and self._error is None:
            out += self._fail(
                ProviderError(
                    502, "the upstream stream ended before completion", FailureClass.TRANSIENT
                )
            )
        return out

    def _frame(self, events: list[StreamEvent]) -> bytes:
        parts: list[bytes] = []
        for event in events:
            name = event.event
            if name == "error":  # the upstream's words never reach the client unscrubbed
                self._error = sanitize(stream_error(_loads(event.data)), self._target)
                parts.append(error_event(self._error))
                break
            data = event.data
            if name in ("message_start", "message_delta"):
                data = self._observe(name, data)
            if name is not None:
                parts.append(b"event: " + name.encode() + b"\n")
            for line in data.split(b"\n"):
                parts.append(b"data: " + line + b"\n")
            parts.append(b"\n")
            if name == "message_stop":
                self._ended = True
            if self._ended or self._error is not None:
                break  # nothing after a terminal event reaches the client
        return b"".join(parts)

    def _observe(self, name: str, data: bytes) -> bytes:
        """Adds the event's usage to the stream's; returns the data to relay (message_delta's
        with the cost of the usage so far, when priced)."""
        payload = _loads(data)
        if name == "message_start":
            message = payload.get("message") if isinstance(payload, dict) else None
            usage = message.get("usage") if isinstance(message, dict) else None
        else:
            usage = payload.get("usage") if isinstance(payload, dict) else None
        if not isinstance(usage, dict):
            return data
        self.usage.update((k, v) for k, v in usage.items() if v is not None)
        self._canonical = None
        if name != "message_delta" or self._cost_of is None:
            return data
        shown = with_cost(usage, self._canonical_usage() or {}, self._cost_of)
        return data if shown is usage else orjson.dumps({**payload, "usage": shown})


def _loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
