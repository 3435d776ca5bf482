"""A streamed upload at the core: read frame by frame, verified as it goes, spooled, scanned.

The edge relays an upload in the hop's streamed mode (shared/hop.py): the credential came
first, and the body arrives as chained frames. Each frame's data is checked
(shared/hop_stream.py), then scanned for its parts (shared/multipart_stream.py) and written to
a bounded spool (core/api/audio/spool.py), so at no point is the body in memory whole. A body
that does not verify (tampered, truncated, an edge that gave up on it mid-stream) is a 401 and
nothing reaches a provider; one past `core.max_upload_bytes` a 413 naming `file`.

The upload rides on the request's ASGI scope (`upload_of`) to the transcription API; the route
(core.app) closes it when the request ends, however it ends.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.requests import ClientDisconnect, Request

from core.api.audio.spool import Spool
from shared.errors import GatewayError
from shared.hop_stream import BrokenChain, Deframer
from shared.multipart import boundary_of
from shared.multipart_stream import PartScanner, ScannedPart, canonical

log = logging.getLogger("interlock.core")
SCOPE_KEY = "interlock.upload"


@dataclass(slots=True)
class Upload:
    spool: Spool
    parts: list[ScannedPart]
    content_type: str  # the client's, with its boundary: the body is relayed as it came
    canonical: bytes  # what it says, whatever its framing (Idempotency-Key's fingerprint)

    @property
    def size(self) -> int:
        return self.spool.size

    def close(self) -> None:
        self.spool.close()


@dataclass(frozen=True, slots=True)
class SplicedUpload:
    """The spool's bytes with [start, end) replaced by `value` (the target's model id), read
    from the spool piece by piece each time it is opened (a failover opens it again)."""

    spool: Spool
    start: int
    end: int
    value: bytes

    @property
    def size(self) -> int:
        return self.spool.size - (self.end - self.start) + len(self.value)

    async def open(self) -> AsyncIterator[bytes]:
        async for piece in self.spool.chunks(0, self.start):
            yield piece
        yield self.value
        async for piece in self.spool.chunks(self.end, self.spool.size):
            yield piece


@dataclass(frozen=True, slots=True)
class UploadLimits:
    max_bytes: int
    memory_bytes: int
    directory: str | None = None


def upload_of(request: Request) -> Upload:
    upload = request.scope.get(SCOPE_KEY)
    if not isinstance(upload, Upload):  # only an upload route's requests get here
        raise GatewayError(400, "the request must be a multipart upload", param="file")
    return upload


def close_upload(request: Request) -> None:
    """The request is over: its spool's memory and temporary file go (a no-op without one)."""
    upload = request.scope.pop(SCOPE_KEY, None)
    if isinstance(upload, Upload):
        upload.close()


def too_large(limit: int) -> GatewayError:
    return GatewayError(
        413,
        f"the upload exceeds the {limit} byte limit",
        param="file",
        code="request_too_large",
    )


async def read_upload(
    request: Request, seed: bytes, limits: UploadLimits, broken: GatewayError
) -> Upload:
    """The verified upload, spooled; `broken` is raised when the framed body does not verify."""
    content_type = request.headers.get("content-type", "")
    scanner = PartScanner(boundary_of(content_type))
    deframer = Deframer(seed)
    spool = Spool(limits.memory_bytes, limits.directory)
    try:
        async for chunk in request.stream():
            for data in deframer.feed(chunk):
                if spool.size + len(data) > limits.max_bytes:
                    raise too_large(limits.max_bytes)
                scanner.feed(data)
                await spool.write(data)
        deframer.finish()
        parts = scanner.finish()
        await spool.seal()
    except BrokenChain as why:
        spool.close()
        log.warning("refused a streamed upload whose frames do not verify: %s", why)
        raise broken from None
    except ClientDisconnect:
        spool.close()
        raise broken from None  # the edge left (or gave up) before the closing frame
    except BaseException:
        spool.close()
        raise
    return Upload(spool, parts, content_type, canonical(parts))
