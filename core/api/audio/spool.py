"""A bounded spool for one upload: memory up to a threshold, then an unlinked temporary file.

The core keeps an upload until its request is over, so a failover can send it again to the
next provider; it must never hold it whole in memory. The first `memory_bytes` stay in memory
(most transcriptions are small); past them, everything goes to a temporary file that is
unlinked the moment it is created, so it can never outlive the process (a crash, a kill),
and whose descriptor `close` releases on every path. Disk I/O runs on a small thread pool in
batches of `BATCH_BYTES`, never on the event loop; a write or read still running when the
request ends (its task cancelled) closes the descriptor when it finishes, never under it.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
MEMORY_BYTES = 1024 * 1024
BATCH_BYTES = 256 * 1024
FILE_PREFIX = "interlock-upload-"
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="interlock-spool")


def _open_unlinked(directory: str | None) -> int:
    fd, path = tempfile.mkstemp(prefix=FILE_PREFIX, dir=directory)
    os.unlink(path)  # only the descriptor keeps it: gone with the process, whatever happens
    return fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class Spool:
    __slots__ = ("_busy", "_closed", "_directory", "_fd", "_limit", "_memory", "_pending", "size")

    def __init__(self, memory_bytes: int = MEMORY_BYTES, directory: str | None = None) -> None:
        self._memory: bytearray | None = bytearray()
        self._pending = bytearray()  # file mode: bytes not yet written
        self._fd = -1
        self._busy: Future[object] | None = None
        self._closed = False
        self._directory = directory
        self.size = 0
        self._limit = memory_bytes

    async def _run(self, work: Callable[[], T]) -> T:
        if self._closed:
            raise asyncio.CancelledError  # the request ended under us
        future: Future[T] = _POOL.submit(work)
        self._busy = future  # type: ignore[assignment]
        try:
            return await asyncio.wrap_future(future)
        finally:
            if future.done():
                self._busy = None

    async def write(self, data: bytes) -> None:
        self.size += len(data)
        if self._memory is not None:
            self._memory += data
            if len(self._memory) <= self._limit:
                return
            self._fd = await self._run(lambda: _open_unlinked(self._directory))
            self._pending, self._memory = self._memory, None
        else:
            self._pending += data
        if len(self._pending) >= BATCH_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        batch, self._pending = bytes(self._pending), bytearray()
        fd = self._fd
        await self._run(lambda: _write_all(fd, batch))

    async def seal(self) -> None:
        """Everything written: the file (if any) holds the whole body from here on."""
        if self._memory is None and self._pending:
            await self._flush()

    async def chunks(self, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [start, end), in pieces of at most BATCH_BYTES (each read off the loop)."""
        at = start
        while at < end:
            size = min(BATCH_BYTES, end - at)
            yield await self.read(at, size)
            at += size

    async def read(self, start: int, size: int) -> bytes:
        if self._memory is not None:
            return bytes(self._memory[start : start + size])
        fd = self._fd
        return await self._run(lambda: os.pread(fd, size, start))

    def close(self) -> None:
        """Frees the memory and the descriptor; a thread still using it closes it after."""
        if self._closed:
            return
        self._closed = True
        self._memory, self._pending = None, bytearray()
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        busy = self._busy
        if busy is not None and not busy.done():
            busy.add_done_callback(lambda _: os.close(fd))
        else:
            os.close(fd)
