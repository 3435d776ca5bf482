"""Where entries live: in process (the embedded default) or in the state store (Redis).

An entry is bytes: a one-line JSON header (when it was stored, the canonical usage it saved)
then the client's response body, so a complete hit sends the stored bytes as they are. Both
backends are bounded: the memory one by total bytes (least recently used first) and by TTL,
Redis by each entry's TTL and its own maxmemory policy.

An entry of `COMPRESS_FROM` bytes or more is stored zlib-compressed (level 1) behind a marker
byte that no raw entry starts with (a raw one starts with its JSON header's `{`), so entries
written before compression existed still decode. Large answers shrink to about a quarter
(JSON text), which is Redis memory and network saved on every hit; small ones, the common
case, stay raw because deflate's set-up alone would cost a few microseconds on each miss
that stores one (measured: about 25 us to compress and 11 us to inflate a 10 KB answer, 5 us
to compress 700 bytes). An entry that does not decode (truncated, corrupted, not ours) is a
miss, never an error.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from core.state.errors import UNAVAILABLE
from core.state.store import Store

log = logging.getLogger("interlock.cache")

COMPRESS_FROM = 4096  # bytes of encoded entry from which it is stored compressed
_DEFLATED = b"\x01"  # the marker byte of a compressed entry (a raw entry starts with "{")
# Inflating stops past this (an entry is at most cache.max_entry_bytes, far less in practice):
# a corrupted or foreign value can never make a lookup allocate without bound.
MAX_INFLATED = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Entry:
    stored_at: float  # unix seconds
    usage: dict[str, Any] | None  # the canonical usage of the answer (what a hit saves)
    body: bytes  # the response body, in the API's complete (non-streamed) form

    def encode(self) -> bytes:
        header = orjson.dumps({"at": self.stored_at, "usage": self.usage})
        raw = header + b"\n" + self.body
        if len(raw) < COMPRESS_FROM:
            return raw
        packed = zlib.compress(raw, 1)
        # Kept raw unless it saves at least an eighth (base64 or already compressed content).
        return _DEFLATED + packed if len(packed) < len(raw) - len(raw) // 8 else raw

    @classmethod
    def decode(cls, raw: bytes) -> Entry | None:
        if raw[:1] == _DEFLATED:
            inflated = _inflate(raw[1:])
            if inflated is None:
                return None
            raw = inflated
        header, sep, body = raw.partition(b"\n")
        if not sep:
            return None
        try:
            meta = orjson.loads(header)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(meta, dict) or not isinstance(meta.get("at"), (int, float)):
            return None
        usage = meta.get("usage")
        return cls(float(meta["at"]), usage if isinstance(usage, dict) else None, body)


def _inflate(packed: bytes) -> bytes | None:
    """A compressed entry's bytes; None when they are not a whole zlib stream within the cap."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(packed, MAX_INFLATED)
    except zlib.error:
        return None
    if not inflater.eof or inflater.unconsumed_tail or inflater.unused_data:
        return None
    return out


class Backend(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...


class MemoryBackend:
    """An LRU bounded by the total size of its values (`max_bytes`)."""

    def __init__(self, max_bytes: int) -> None:
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._max_bytes = max_bytes
        self.size = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= time.monotonic():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry[0]

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        if len(value) > self._max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        while self.size + len(value) > self._max_bytes and self._entries:
            self._drop(next(iter(self._entries)))
        self._entries[key] = (value, time.monotonic() + ttl_s)
        self.size += len(value)

    def _drop(self, key: str) -> None:
        value, _ = self._entries.pop(key)
        self.size -= len(value)


class StoreBackend:
    """Redis's GET and SET PX (one round trip each), shared by every replica. Given the Redis
    store itself, not the resilient wrapper: while Redis is down a lookup is a miss and an
    answer is not stored (never a 503, never entries piling up in the per-process fallback)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, key: str) -> bytes | None:
        try:
            return await self._store.get(key)
        except UNAVAILABLE as exc:
            log.warning("response cache lookup failed (%s): a miss", type(exc).__name__)
            return None

    async def get_or_lead(
        self, key: str, lock: str, token: bytes, ttl_s: float
    ) -> tuple[bytes | None, bytes | None] | None:
        """The lookup and a miss's coalescing lock in one round trip (Store.get_or_lead);
        None when the store failed (a miss, and no lock: the request leads locally)."""
        try:
            return await self._store.get_or_lead(key, lock, token, ttl_s)
        except UNAVAILABLE as exc:
            log.warning("response cache lookup failed (%s): a miss", type(exc).__name__)
            return None

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        try:
            await self._store.set(key, value, ttl_s)
        except UNAVAILABLE as exc:
            log.warning("response cache store failed (%s): not stored", type(exc).__name__)

    async def set_unlead(
        self, key: str, value: bytes, ttl_s: float, lock: str, token: bytes
    ) -> int | None:
        """The entry stored and a coalescing lock released in one round trip
        (Store.set_unlead): the followers the lock counted; None when the store failed (not
        stored, and the lock is still held: its holder releases it as usual)."""
        try:
            return await self._store.set_unlead(key, value, ttl_s, lock, token)
        except UNAVAILABLE as exc:
            log.warning("response cache store failed (%s): not stored", type(exc).__name__)
            return None
