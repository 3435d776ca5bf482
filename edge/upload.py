"""An upload (multipart/form-data) relayed from the client to a core without being held whole.

The edge reads only as far as the `model` field, to route: the official SDKs send the text
fields first and the file last (httpx writes data fields before files; checked with
openai-python: model, language, ..., file), so the model is usually in the first few hundred
bytes. A client that puts the file first (curl -F file=@... -F model=...) is not made to wait
for the whole file: the edge stops peeking at the file's first byte (or after PEEK_BYTES) and
routes by tenant to the default pool, leaving the model allow-list to the core, which checks
it on every request anyway (core.pipeline.stages). Buffering the file to find the model would
defeat the point; refusing the order would break clients that are valid multipart.

The rest is read chunk by chunk as the core takes it, framed with the hop's chained tags
(shared/hop.py, streamed mode), and counted against `edge.max_upload_bytes`: past it the edge
stops, the core sees a body without its closing frame and never calls a provider, and the
client gets a 413 naming `file` and the limit (at once when its Content-Length says so).
Because the client's body can be read only once, another core replica can take the request
only before any byte of it was sent (edge/corecall.py: before the core's `100 Continue`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.requests import ClientDisconnect, Request
from starlette.types import Message

from shared.errors import GatewayError
from shared.hop_stream import Framer
from shared.multipart import boundary_of
from shared.multipart_stream import PartScanner
from shared.names import check_model_name

PEEK_BYTES = 256 * 1024  # read this far at most looking for `model` before the file


class UploadTooLarge(Exception):
    """The client's upload went past the edge's limit while being relayed."""


class UploadSource:
    """The client's upload: a peeked head, then the rest, read once as the core takes it."""

    __slots__ = (
        "_head",
        "_rest",
        "_size",
        "exhausted",
        "left",
        "limit",
        "model",
        "overflowed",
        "request",
        "started",
    )

    def __init__(self, request: Request, limit: int) -> None:
        self.request = request
        self.limit = limit
        self.model: str | None = None
        self._head: list[bytes] = []
        self._rest: AsyncIterator[bytes] | None = request.stream()
        self._size = 0
        self.exhausted = asyncio.Event()  # every byte went to the core
        self.started = False  # a byte of the body went (or may have gone) to a core
        self.overflowed = False  # it went past the limit while being relayed
        self.left = False  # the client went away while it was being relayed

    def too_large(self) -> GatewayError:
        return GatewayError(
            413,
            f"file: the upload exceeds the gateway's limit of {self.limit} bytes "
            "(edge.max_upload_bytes)",
            param="file",
            code="request_too_large",
        )

    def refusal(self) -> GatewayError:
        """Why a relay cut short on the edge's side failed: never the core replica's fault."""
        if self.overflowed:
            return self.too_large()
        return GatewayError(499, "the client left mid-upload", code="client_closed")

    def _count(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self.limit:
            self.overflowed = True
            raise UploadTooLarge

    async def peek(self) -> None:
        """Reads up to the `model` field (or the file's start); 400s for what is plainly not
        multipart, 413 when the declared length is over the limit."""
        declared = self.request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            raise self.too_large()
        scanner = PartScanner(boundary_of(self.request.headers.get("content-type")))
        stream = self._rest
        assert stream is not None
        chunk: bytes | None = b""
        try:
            while self._size < PEEK_BYTES and not scanner.done:
                chunk = await anext(stream, None)
                if chunk is None:
                    break
                self._count(chunk)
                self._head.append(chunk)
                scanner.feed(chunk)
                if self._found(scanner):
                    return
        except UploadTooLarge:
            raise self.too_large() from None
        if scanner.done or chunk is None:
            scanner.finish()  # the whole body is in hand: a malformed one is a 400 now

    def _found(self, scanner: PartScanner) -> bool:
        for part in scanner.parts:
            if part.is_file:
                return True  # the file comes first: route without the model
            if part.name == "model":
                if not part.complete:
                    return False
                self.model = check_model_name({"model": part.text()})
                return True
        return False

    async def frames(self, seed: bytes) -> AsyncIterator[bytes]:
        """The body as chained frames for one attempt (its credential's chain key); raises
        UploadTooLarge past the limit, without the closing frame."""
        framer = Framer(seed)
        head, self._head = self._head, []
        rest, self._rest = self._rest, None
        self.started = True
        if rest is None:
            raise RuntimeError("an upload's body can be sent once")  # edge.app never retries
        for chunk in head:
            for piece in framer.frames(chunk):
                yield piece
        try:
            async for chunk in rest:
                self._count(chunk)
                for piece in framer.frames(chunk):
                    yield piece
        except ClientDisconnect:
            self.left = True  # the core sees a cut, and the replica is not to blame
            raise
        yield framer.close()
        self.exhausted.set()

    async def receive_after_body(self) -> Message:
        """The client's receive channel for the disconnect watcher, once the body is read
        (before that, the relay itself reads it and sees a client that leaves)."""
        await self.exhausted.wait()
        return await self.request.receive()
