"""Chat upstreams: an adapter's pure translation over its provider's Transport.

Sending, signing, timeouts and transport-error mapping are core.providers.transport's; this module
keeps what is chat's own: the Upstream protocol the dispatcher calls, and the translation backstop.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Protocol

from core.providers.adapters.base import (
    JSON,
    Adapter,
    Capabilities,
    ProviderError,
    StreamEvent,
    StreamParser,
    Target,
    UpstreamRequest,
)
from core.providers.parsing import guarded_error_parser, parsing
from core.providers.scrub import sanitize
from core.providers.transport import Transport, UpstreamBody
from core.wire.sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder
from shared.errors import FailureClass

log = logging.getLogger("interlock.core")

# What a translator raises when a client payload has a shape it did not expect.
TRANSLATION_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError)


@contextlib.contextmanager
def translating(label: str) -> Iterator[None]:
    """Turns a translator's crash on a client payload into a 400, the one place it can happen.

    Validation (core.api.validate) is the root defence: every shape an adapter relies on is
    checked there with the field named. This is the backstop for a shape validation missed.
    Trade-off: such a crash is usually a gap in our validation or a bug in an adapter, yet it
    was triggered by this client's input and the same input fails the same way every time, so
    the client gets a 400 `invalid_request` (not a 5xx that would page operators, count
    against the target's health, or invite the client to retry), while the operators get the
    full traceback in the log to close the gap. A CLIENT_ERROR never fails over or retries.
    """
    try:
        yield
    except TRANSLATION_ERRORS:
        log.exception("could not translate a request for %s (client input)", label)
        raise ProviderError(
            400,
            f"the request could not be translated for {label}; "
            "check the types and shapes of its fields",
            FailureClass.CLIENT_ERROR,
            code="invalid_request",
        ) from None


class Upstream(Protocol):
    """Anything that can serve a canonical request: an HTTP provider or the in-process mock."""

    def capabilities(self, target: Target) -> Capabilities: ...

    async def complete(self, canonical: JSON, target: Target) -> JSON: ...

    def stream(self, canonical: JSON, target: Target) -> AsyncIterator[JSON]:
        """Raises ProviderError before the first chunk if the call fails early."""
        ...


class HttpUpstream:
    """An adapter over its provider's Transport: pure build, send, pure parse.

    Every upstream error, before the first chunk or as an in-stream error event, leaves here
    scrubbed (core.providers.scrub): the adapters' parsers stay pure. Whatever the decoder or
    a parser raises on upstream data leaves as a ProviderError (core.providers.parsing)."""

    __slots__ = ("_max_event_bytes", "_parse_error", "_transport", "adapter")

    def __init__(
        self,
        adapter: Adapter,
        transport: Transport,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self.adapter = adapter
        self._transport = transport
        self._parse_error = guarded_error_parser(adapter.parse_error)  # bound once, not per call
        self._max_event_bytes = max_event_bytes

    def capabilities(self, target: Target) -> Capabilities:
        return self.adapter.capabilities(target)

    async def complete(self, canonical: JSON, target: Target) -> JSON:
        with translating(target.label):
            request = self.adapter.build_request(canonical, target)
        return await self.send(request, target)

    async def send(self, request: UpstreamRequest, target: Target) -> JSON:
        """A built request's whole answer, parsed (subclasses that build otherwise reuse it)."""
        _, body = await self._transport.fetch(request, target, self._parse_error)
        try:
            with parsing(target):
                return self.adapter.parse_response(body, target)
        except ProviderError as error:
            raise sanitize(error, target) from None

    async def stream(self, canonical: JSON, target: Target) -> AsyncGenerator[JSON, None]:
        """One generator from request to last chunk: the consumer's `aclose` (core.api.relay,
        core.resilience.dispatch) ends it at once, releasing the connection in `relay`."""
        try:
            with translating(target.label):
                parser = self.adapter.stream_parser(canonical, target)
            body = await self.opened(canonical, target)
        except ProviderError as error:
            raise sanitize(error, target) from None
        chunks = self.relay(body, parser, target)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()  # at once, not when collected: it releases the connection

    async def opened(self, canonical: JSON, target: Target) -> UpstreamBody:
        """The canonical request built and opened (a subclass that builds otherwise, e.g.
        around a cache it must create first, overrides this and keeps `stream`)."""
        with translating(target.label):
            request = self.adapter.build_request(canonical, target)
        return await self.open(request, target)

    async def open(self, request: UpstreamRequest, target: Target) -> UpstreamBody:
        """The body of a built streaming request once its status said success."""
        return await self._transport.open(request, target, self._parse_error)

    async def relay(
        self, body: UpstreamBody, parser: StreamParser, target: Target
    ) -> AsyncGenerator[JSON, None]:
        """An opened body's chunks. Chunks are parsed an event at a time and yielded outside
        the parsing guard, so nothing a consumer throws in is mistaken for the upstream's
        fault; the body is released whatever happens."""
        try:
            decoder = self.adapter.decoder(self._max_event_bytes)
            split = isinstance(decoder, SSEDecoder)  # the first read's first event apart
            try:
                while raw := await body.read():
                    for piece in _first_event_apart(raw) if split else (raw,):
                        with parsing(target):
                            events = decoder.feed(piece)
                        for chunk in _parsed(events, parser, target):
                            yield chunk
                    split = False
                with parsing(target):
                    events = decoder.finish()
                for chunk in _parsed(events, parser, target):
                    yield chunk
            finally:
                body.release()
            with parsing(target):
                chunks = parser.finish()
            for chunk in chunks:
                yield chunk
        except ProviderError as error:
            raise sanitize(error, target) from None


def _first_event_apart(raw: bytes) -> tuple[bytes, ...]:
    """A stream's first read as its first SSE event, then the rest: an upstream that writes
    many events at once (a whole answer, back to back) has its first chunk sent before the
    others are decoded (~2.5 us an event), not after. Any split gives the decoder the same
    events; an event that does not end in a plain blank line is simply not split off."""
    end = raw.find(b"\n\n") + 2
    return (raw,) if end <= 1 or end == len(raw) else (raw[:end], raw[end:])


def _parsed(events: list[StreamEvent], parser: StreamParser, target: Target) -> Iterator[JSON]:
    """The chunks of each event in turn: those before a failing event still go out first."""
    for event in events:
        with parsing(target):
            chunks = parser.feed(event)
        yield from chunks
