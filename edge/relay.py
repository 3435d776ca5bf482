"""The core's answer relayed to the client: small ones whole, large or binary ones chunk by
chunk (never held whole), event streams by whole events only (edge.events), each ending in a
way the client's library reports as an error when the core fails midway."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import aiohttp
from starlette.responses import Response, StreamingResponse

from edge.events import EventSplitter, EventTooLarge, error_event
from shared.cut_stream import CutShort, CuttableStream
from shared.errors import Api, GatewayError

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
# one is streamed through in chunks, so the edge never holds more than a chunk of it.
_WHOLE_BODY_BYTES = 256 * 1024
_CHUNK_BYTES = 64 * 1024


async def relay(upstream: aiohttp.ClientResponse, api: Api, max_bytes: int) -> Response:
    headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _DROP_RESPONSE_HEADERS}
    if upstream.headers.get("content-type", "").startswith("text/event-stream"):
        return StreamingResponse(
            _stream(upstream, api), status_code=upstream.status, headers=headers
        )
    length = upstream.content_length
    if length is not None and length > max_bytes:
        upstream.close()
        raise _too_large(max_bytes)
    if length is not None and length <= _WHOLE_BODY_BYTES:
        try:
            body = await upstream.read()
        except (aiohttp.ClientError, TimeoutError):
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


async def _body(upstream: aiohttp.ClientResponse, max_bytes: int) -> AsyncIterator[bytes]:
    """A large or binary body (speech audio), chunk by chunk. Once headers are sent nothing can
    be said in-band: if the core dies (or cuts an audio stream whose provider failed) or,
    without a content-length, the body outgrows the cap, the client's response is cut short
    (shared.cut_stream), which every HTTP client reports as an error, never as a whole answer."""
    sent = 0
    try:
        async for chunk in upstream.content.iter_chunked(_CHUNK_BYTES):
            sent += len(chunk)
            if sent > max_bytes:
                log.warning("cut a response larger than edge.max_response_bytes (%d)", max_bytes)
                raise CutShort
            yield chunk
        upstream.release()  # read to the end: the connection may be reused
    except (aiohttp.ClientError, TimeoutError):
        raise CutShort from None
    finally:
        upstream.close()


async def _stream(upstream: aiohttp.ClientResponse, api: Api) -> AsyncIterator[bytes]:
    """Relays whole events only (edge.events): if the core dies mid-event, the half event is
    never sent and the client's parser sees a clean error event in its API's format, never a
    clean close."""
    splitter = EventSplitter()
    try:
        async for chunk in upstream.content.iter_any():
            events = splitter.feed(chunk)
            if events:
                yield events
        rest = splitter.rest()
        if rest:
            yield rest
    except EventTooLarge:
        yield error_event(api, "the gateway core sent an oversized event", "core_unavailable")
    except (aiohttp.ClientError, TimeoutError):
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
