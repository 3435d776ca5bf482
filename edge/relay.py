"""The core's answer relayed to the client: small ones whole, large or binary ones chunk by
chunk (never held whole), event streams by whole events only (edge.events), each ending in a
way the client's library reports as an error when the core fails midway."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from starlette.responses import Response

from edge.events import EventSplitter, EventTooLarge, error_event
from shared.cut_stream import CutShort, CuttableStream
from shared.errors import Api, GatewayError
from shared.h1 import H1Error
from shared.h1 import Response as CoreResponse
from shared.streamed import Streamed

log = logging.getLogger("interlock.edge")

# Hop-by-hop and recomputed headers are not relayed from the core's response.
_DROP_RESPONSE_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"}
)


def core_unavailable() -> GatewayError:
    return GatewayError(
        502, "the gateway core is unavailable; retry shortly", code="core_unavailable"
    )


# A non-streaming answer up to this size is read whole (one write, no relay task); a larger
# one is streamed through as it arrives (shared.h1 pauses the socket above its high-water
# mark), so the edge never holds more than a few chunks of it.
_WHOLE_BODY_BYTES = 256 * 1024
# Failures reading the core's answer: the connection lost or cut, a timeout, bad framing.
_READ_ERRORS = (H1Error, TimeoutError)


async def relay(upstream: CoreResponse, api: Api, max_bytes: int) -> Response:
    # shared.h1 lower-cases header names
    headers = {k: v for k, v in upstream.headers.items() if k not in _DROP_RESPONSE_HEADERS}
    if upstream.headers.get("content-type", "").startswith("text/event-stream"):
        return Streamed(_stream(upstream, api), status_code=upstream.status, headers=headers)
    length = upstream.content_length
    if length is not None and length > max_bytes:
        upstream.close()
        raise _too_large(max_bytes)
    if length is not None and length <= _WHOLE_BODY_BYTES:
        try:
            body = await upstream.read()
        except _READ_ERRORS:
            raise core_unavailable() from None
        finally:
            upstream.release()
        return Response(body, status_code=upstream.status, headers=headers)
    if length is not None:
        headers["content-length"] = str(length)  # the client still learns the size up front
    return CuttableStream(_body(upstream, max_bytes), status_code=upstream.status, headers=headers)


def _too_large(max_bytes: int) -> GatewayError:
    return GatewayError(
        502,
        f"the gateway core's answer is larger than edge.max_response_bytes ({max_bytes} bytes)",
        code="response_too_large",
    )


async def _body(upstream: CoreResponse, max_bytes: int) -> AsyncIterator[bytes]:
    """A large or binary body (speech audio), chunk by chunk. Once headers are sent nothing can
    be said in-band: if the core dies (or cuts an audio stream whose provider failed) or,
    without a content-length, the body outgrows the cap, the client's response is cut short
    (shared.cut_stream), which every HTTP client reports as an error, never as a whole answer."""
    sent = 0
    try:
        async for chunk in upstream:  # read to its end, the connection goes back to the pool
            sent += len(chunk)
            if sent > max_bytes:
                log.warning("cut a response larger than edge.max_response_bytes (%d)", max_bytes)
                raise CutShort
            yield chunk
    except _READ_ERRORS:
        raise CutShort from None
    finally:
        upstream.close()


async def _stream(upstream: CoreResponse, api: Api) -> AsyncIterator[bytes]:
    """Relays whole events only (edge.events): if the core dies mid-event, the half event is
    never sent and the client's parser sees a clean error event in its API's format, never a
    clean close."""
    splitter = EventSplitter()
    try:
        async for chunk in upstream:
            events = splitter.feed(chunk)
            if events:
                yield events
        rest = splitter.rest()
        if rest:
            yield rest
    except EventTooLarge:
        yield error_event(api, "the gateway core sent an oversized event", "core_unavailable")
    except _READ_ERRORS:
        message = "the gateway core connection was lost mid-stream"
        yield error_event(api, message, "core_unavailable")
    finally:
        upstream.close()


def timed(response: Response, started: float) -> Response:
    """Server-Timing: the edge's own `edge;dur` (everything from the request's arrival to its
    answer's headers, the core's time included) in front of the core's `core` and `upstream`
    metrics. A stream's headers leave before its body, so for a stream every duration ends at
    its first chunk."""
    edge = f"edge;dur={(time.perf_counter() - started) * 1000:.1f}"
    core = response.headers.get("server-timing")
    response.headers["server-timing"] = f"{edge}, {core}" if core else edge
    return response
