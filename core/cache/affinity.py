"""Prompt-cache affinity: which target and key already hold a request's cached prefix.

A provider's prompt cache lives with one deployment and one account (one API key): a request
whose prefix was written on target A with key k reads it back only there. Routing that
ignores this (a weighted draw, a key pool's round robin) pays the cache write again on every
other target and key. So, for requests that carry cache marks (the client's, or the
gateway's in auto mode), the prompt-cache stage computes a fingerprint (a hash of the tenant
and the stable prefix: core.pipeline.prefix.fingerprint, so tenants never share one),
and this registry remembers, per fingerprint and route, the holder: the target (its health
label) and key that served such a request last and reported cache writes or reads.

A conversation grows: in auto mode the last mark moves every turn (the turn before the last
user message), so a request's longest prefix is new each turn. So the stage fingerprints the
prefix at message boundaries (core.pipeline.prefix.prefixes: a hash chained message by
message, marks stripped), and the lookup reads the longest prefix's entry and those of up to
LOOKBACK earlier boundaries (and the other marks') in one read, taking the longest found: turn
N+1 finds what turn N recorded. Only the longest prefix is recorded.

- plan: one lookup per fingerprinted request (`lookup`), before ordering; the strategies read
  the holder as a soft preference (core.routing.ordering, core.routing.signals), and the key
  pool of the holder target tries the holder key first (core.resilience.key_pools);
- account: `served` records the serving target and key when the answer reported cache
  writes or reads, for the marks' TTL (5 minutes; 1 hour when a mark asks for 1h).

Where: in this process (an LRU of MAX_ENTRIES, each entry with its TTL) for the embedded
default; in the state store when Redis is configured, so replicas share holders: one MGET at
plan (the keys share the tenant's hash tag: one slot), and a SET only when the holder changed,
the prefix grew, or its entry is past half its TTL (not a write per request), sent in the
background (at most MAX_PENDING_WRITES at once). Redis is given
the store itself, not the resilient wrapper: a failure or a reply slower than LOOKUP_TIMEOUT_S
means no affinity for that request (never a 503, never a slower request), and Redis is not
asked again for RETRY_AFTER_S.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import orjson
from prometheus_client.core import Metric

from core.observe.families import by, counters
from core.providers.adapters.base import Target
from core.resilience.key_pools import key_id
from core.routing.signals import Holder
from core.spend.usage import UsageSplit
from core.state.errors import UNAVAILABLE
from core.state.store import Store

log = logging.getLogger("interlock.cache")

MAX_ENTRIES = 65_536  # fingerprints held in process memory (least recently used dropped)
LOOKUP_TIMEOUT_S = 0.1  # a lookup slower than this is a miss: affinity is only a preference
RETRY_AFTER_S = 1.0  # after a Redis failure, no affinity (and no Redis call) for this long
MAX_PENDING_WRITES = 64  # background SETs in flight; more are dropped (the next one refreshes)
TTL_5M = 300.0
TTL_1H = 3600.0
PREFIX = "il:aff:"
LOOKBACK = 8  # message boundaries before the last mark also looked up (a turn adds 2 or more)
# Fingerprints per lookup at most: the last mark's, LOOKBACK, 3 other marks, the base, and
# the turns before the last 3 user messages (core.pipeline.prefix.prefixes).
MAX_LOOKUP = 16

FAILURES: tuple[type[BaseException], ...] = (*UNAVAILABLE, TimeoutError)  # no affinity, no 503
# Lookups since start, for /metrics (core.observe.metrics): hit, miss, error.
LOOKUPS = {"hit": 0, "miss": 0, "error": 0}


@dataclass(slots=True)
class Ticket:
    """One fingerprinted request's affinity: made by the prompt-cache stage, its holder
    filled in by the lookup at plan, read again when the request is accounted.

    `fingerprint`: the longest prefix (through the last mark), recorded once served;
    `shorter`: earlier boundaries of the same prefix, longest first, looked up with it (a
    growing conversation's last turn recorded one of them); `scope`: the tenant's tag."""

    fingerprint: str
    ttl_s: float
    shorter: tuple[str, ...] = ()
    scope: str = ""
    holder: Holder | None = None
    expires_at: float = 0.0  # the looked-up entry's end (unix seconds); 0: none found
    found: str | None = None  # the fingerprint the holder was found under


def ticket(prints: list[str], long_lived: bool, scope: str = "") -> Ticket:
    """A request's ticket from its fingerprints, longest first (at most MAX_LOOKUP are
    looked up); `long_lived`: one of its marks asked for the 1-hour TTL."""
    ttl = TTL_1H if long_lived else TTL_5M
    return Ticket(prints[0], ttl, tuple(prints[1:MAX_LOOKUP]), scope)


def holder_of(ticket: Ticket | None) -> Holder | None:
    """Who holds a request's cached prefix, as looked up at plan (None: unmarked, or none)."""
    return ticket.holder if ticket is not None else None


def entry_key(fingerprint: str, route: str, scope: str = "") -> str:
    """Per fingerprint and route: routes to different models sharing one system prompt (so
    one fingerprint) keep a holder each instead of overwriting each other's. The route name
    is hashed (a tenant may name the model of a `provider/<name>` route). Every key of one
    lookup shares the tenant's `scope` as its hash tag, so one MGET reads them all (one slot
    in a cluster). The one place these keys are named."""
    tag = hashlib.blake2b(route.encode(), digest_size=6).hexdigest()
    return f"{PREFIX}{{{scope}}}:{fingerprint}:{tag}" if scope else f"{PREFIX}{fingerprint}:{tag}"


def _encode(holder: Holder, expires_at: float) -> bytes:
    return orjson.dumps([holder.label, holder.key_id, expires_at])


def _decode(raw: bytes | None) -> tuple[Holder, float] | None:
    """A stored entry, or None for a missing or malformed one (never trusted blindly)."""
    if raw is None:
        return None
    try:
        label, key, expires_at = orjson.loads(raw)
    except (orjson.JSONDecodeError, ValueError, TypeError):
        return None
    if not isinstance(label, str) or not isinstance(key, str):
        return None
    if not isinstance(expires_at, int | float):
        return None
    return Holder(label, key), float(expires_at)


def _holder_of(target: Target) -> Holder:
    key = target.api_key
    return Holder(target.health_label, key_id(key) if key is not None else "")


class Affinities:
    """The registry (see the module docstring): `store` is Redis itself (shared by the
    replicas), or None for this process's memory."""

    def __init__(self, store: Store | None = None, max_entries: int = MAX_ENTRIES) -> None:
        self._store = store
        self._memory: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._max_entries = max_entries
        self._retry_at = 0.0
        self._pending: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._memory)

    async def lookup(self, ticket: Ticket, route: str, counted: bool = True) -> Holder | None:
        """The holder of the ticket's longest prefix found on `route` (also kept on the
        ticket), or None: its fingerprints in one read (one MGET with Redis);
        `counted=False` (a route explanation) leaves the metrics alone."""
        prints = (ticket.fingerprint, *ticket.shorter)
        raws = await self._get([entry_key(p, route, ticket.scope) for p in prints])
        found: tuple[Holder, float] | None = None
        now = time.time()
        for fingerprint, raw in zip(prints, raws or (), strict=False):
            found = _decode(raw)
            if found is not None and found[1] > now:
                ticket.found = fingerprint
                break
            found = None
        if counted:
            LOOKUPS["error" if raws is False else "miss" if found is None else "hit"] += 1
        if found is None:
            return None
        ticket.holder, ticket.expires_at = found
        return ticket.holder

    def served(self, ticket: Ticket, route: str, target: Target, usage: UsageSplit) -> None:
        """The answer was served by `target` (with its leased key): it holds the prefix now
        if it reported cache writes or reads, recorded under the longest fingerprint. Written
        only when the holder changed, the longest was not the one found (a conversation
        grew), or the entry is past half its TTL."""
        if not (usage.cache_read or usage.cache_write_5m or usage.cache_write_1h):
            return
        holder = _holder_of(target)
        now = time.time()
        fresh = ticket.expires_at - now > ticket.ttl_s / 2
        if holder == ticket.holder and ticket.found == ticket.fingerprint and fresh:
            return
        ticket.holder, ticket.expires_at = holder, now + ticket.ttl_s
        ticket.found = ticket.fingerprint
        value = _encode(holder, ticket.expires_at)
        key = entry_key(ticket.fingerprint, route, ticket.scope)
        if self._store is None:
            self._remember(key, value, ticket.ttl_s)
        elif len(self._pending) < MAX_PENDING_WRITES and time.monotonic() >= self._retry_at:
            task = asyncio.get_running_loop().create_task(self._set(key, value, ticket.ttl_s))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _get(self, keys: list[str]) -> list[bytes | None] | Literal[False]:
        """The stored bytes per key (None when absent), False when Redis failed (or is
        resting)."""
        store = self._store
        if store is None:
            return [self._recall(key) for key in keys]
        if time.monotonic() < self._retry_at:
            return False
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                return await store.mget(keys)
        except FAILURES as exc:
            self._failed("lookup", exc)
            return False

    def _recall(self, key: str) -> bytes | None:
        entry = self._memory.get(key)
        if entry is None:
            return None
        if entry[1] <= time.monotonic():
            del self._memory[key]
            return None
        self._memory.move_to_end(key)
        return entry[0]

    async def _set(self, key: str, value: bytes, ttl_s: float) -> None:
        assert self._store is not None
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT_S * 10):
                await self._store.set(key, value, ttl_s)
        except FAILURES as exc:
            self._failed("record", exc)

    def _failed(self, what: str, exc: BaseException) -> None:
        if time.monotonic() >= self._retry_at:
            log.warning(
                "prompt-cache affinity %s failed (%s): none for now", what, type(exc).__name__
            )
        self._retry_at = time.monotonic() + RETRY_AFTER_S

    def _remember(self, key: str, value: bytes, ttl_s: float) -> None:
        memory = self._memory
        memory.pop(key, None)
        while len(memory) >= self._max_entries:
            memory.popitem(last=False)
        memory[key] = (value, time.monotonic() + ttl_s)


def metric_family() -> Metric:
    """Lookups by result, for /metrics (core.observe.metrics)."""
    return counters(
        "interlock_prompt_cache_affinity_lookups_total",
        "Lookups of the target and key holding a request's cached prefix: hit, miss, error "
        "(Redis failed or slow).",
        ("result",),
        by(LOOKUPS),
    )
