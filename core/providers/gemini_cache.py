"""Gemini explicit context caches, shared by every core replica through the state store.

The adapter (core.providers.adapters.gemini.caching) turns a request's cache markers into a
plan: the prefix to cache and the body to send beside it. This module owns the I/O around it:

- a registry in the state store (Redis across replicas, MemoryStore in the embedded default),
  keyed by a digest of tenant, provider, endpoint, key, model and prefix, so a cache is never
  shared across tenants or used with a key of another project. Its value is the resource name
  and Gemini's `expireTime`; an entry is used until `EXPIRY_MARGIN_S` before that time and kept
  `GRACE_S` longer, so whoever finds it stale knows which resource it replaces;
- a create-once lock (`Store.claim`, SET NX) per registry key and generation (the name of the
  resource being replaced, or none), so concurrent replicas create one resource: the winner
  creates and records it, the others poll the registry for at most `WAIT_S` and otherwise send
  that one request uncached;
- a resource Gemini says is gone (403 or 404 on a request naming it: it expired early or was
  deleted) is recreated once and the request retried once.

A marker that cannot be honoured (prefix under the model's minimum, cache refused or not
created in time, state store down) is never an error: the request goes uncached and the
marker's place and a reason code are reported for the x-interlock-cache-dropped header
(core.wire.prompt_cache.report_dropped: `where=reason`), logged and counted (`cache_counts`, for
/metrics). Reason codes: below_minimum, unsupported, no_suffix (caching.py); cache_unavailable
(state store down), cache_refused (Gemini answered 4xx to the creation), cache_failed (any
other failure or a timeout), cache_pending (another replica still creating it after WAIT_S).
Gemini's storage cost of a cache is not priced.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import orjson

from core.observe import context as requestctx
from core.providers.adapters.base import JSON, ProviderError, Target, UpstreamRequest
from core.providers.adapters.gemini import GeminiAdapter
from core.providers.adapters.gemini.caching import CachePlan, Marker, Uncached
from core.providers.transport import Transport, UpstreamBody
from core.providers.upstream import HttpUpstream, translating
from core.state.store import Store
from core.wire import prompt_cache as pc
from shared.errors import FailureClass, GatewayError, invalid_upstream, upstream_object

log = logging.getLogger("interlock.upstream")
T = TypeVar("T")

REGISTRY_PREFIX = "gcc:"
EXPIRY_MARGIN_S = 15.0  # a resource this close to its expiry is not named any more
GRACE_S = 600.0  # how long a stale entry is kept to name the resource it replaces
LOCK_TTL_S = 30.0  # one creation's lock; creation is abandoned after as long
WAIT_S = 5.0  # how long a replica that lost the lock waits for the winner's resource
_NAME = re.compile(
    r"^(?:cachedContents/|projects/[^/]+/locations/[^/]+/cachedContents/)[A-Za-z0-9_-]{1,128}$"
)
_FRACTION = re.compile(r"\.(\d{1,6})\d*")
_GONE = (403, 404)

# Counters by event (fixed names: created, reused, recreated, dropped): bounded by the code.
_counts: dict[str, int] = {}


def cache_counts() -> dict[str, int]:
    return dict(_counts)


def _count(event: str, n: int = 1) -> None:
    _counts[event] = _counts.get(event, 0) + n


def _drop(markers: tuple[Marker, ...], reason: str, detail: str, target: Target) -> None:
    log.info(
        "gemini context cache not used for %s: %s, %s (%d marker(s) dropped)",
        target.label,
        reason,
        detail,
        len(markers),
    )
    _count("dropped", len(markers))
    pc.report_dropped((m.where, reason) for m in markers)


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    expires: float  # seconds since the epoch (one clock for every replica: Gemini's)

    def usable(self, now: float) -> bool:
        return self.expires - now > EXPIRY_MARGIN_S


def registry_key(plan: CachePlan, target: Target, models_url: str) -> str:
    """Tenant, provider, endpoint (AI Studio or a Vertex project and region), key and model:
    a cache belongs to one project, and is never shared across tenants."""
    ctx = requestctx.current()
    key = target.api_key.reveal() if target.api_key else ""
    parts = (ctx.tenant if ctx else "", target.provider.name, models_url, key, target.model)
    seed = "\0".join((*parts, plan.digest)).encode()
    return REGISTRY_PREFIX + hashlib.blake2b(seed, digest_size=20).hexdigest()


def parse_expiry(value: object, fallback: float) -> float:
    """Gemini's RFC 3339 `expireTime` (nanosecond fractions allowed) as epoch seconds."""
    if not isinstance(value, str):
        return fallback
    try:
        return datetime.fromisoformat(_FRACTION.sub(r".\1", value, count=1)).timestamp()
    except ValueError:
        return fallback


class CacheRegistry:
    """The registry's store calls; a store that is unavailable means "no cache", never a
    failed request. Until `attach` (start-up), there is no registry and nothing is cached."""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store

    async def lookup(self, key: str) -> Entry | None:
        if self.store is None:
            return None
        try:
            raw = await self.store.get(key)
        except GatewayError:
            return None
        if raw is None:
            return None
        try:
            value = orjson.loads(raw)
            return Entry(str(value["name"]), float(value["expires"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None

    async def claim(self, key: str, stale: str | None) -> bool | None:
        """True: this replica creates the generation after `stale`; False: another does;
        None: the store cannot say (nobody would record a resource: go uncached)."""
        if self.store is None:
            return None
        generation = hashlib.blake2b((stale or "").encode(), digest_size=8).hexdigest()
        try:
            return await self.store.claim(f"{key}:lock:{generation}", LOCK_TTL_S)
        except GatewayError:
            return None

    async def record(self, key: str, entry: Entry) -> None:
        if self.store is None:
            return
        ttl = entry.expires - time.time() + GRACE_S
        value = orjson.dumps({"name": entry.name, "expires": entry.expires})
        try:
            await self.store.set(key, value, ttl)
        except GatewayError:
            log.warning("gemini context cache created but not recorded: state store unavailable")

    async def wait(self, key: str, stale: str | None) -> Entry | None:
        """The entry another replica is creating, polled with growing pauses."""
        deadline = time.monotonic() + WAIT_S
        pause = 0.02
        while time.monotonic() < deadline:
            await asyncio.sleep(pause)
            entry = await self.lookup(key)
            if entry is not None and entry.name != stale and entry.usable(time.time()):
                return entry
            pause = min(pause * 2, 0.25)
        return None


@dataclass(frozen=True, slots=True)
class Prepared:
    request: UpstreamRequest
    cache: str | None  # the cachedContents name the request carries


class GeminiUpstream(HttpUpstream):
    """Gemini's upstream: HttpUpstream plus explicit context caches for marked prefixes."""

    __slots__ = ("gemini", "registry")

    def __init__(self, adapter: GeminiAdapter, transport: Transport, max_event_bytes: int) -> None:
        super().__init__(adapter, transport, max_event_bytes)
        self.gemini = adapter
        self.registry = CacheRegistry()

    def attach(self, store: Store) -> None:
        """The state store the registry lives in (core.app, once the store is built)."""
        self.registry = CacheRegistry(store)

    async def complete(self, canonical: JSON, target: Target) -> JSON:
        return await self._cached(canonical, target, self.send)

    async def opened(self, canonical: JSON, target: Target) -> UpstreamBody:
        return await self._cached(canonical, target, self.open)

    async def _cached(
        self,
        canonical: JSON,
        target: Target,
        call: Callable[[UpstreamRequest, Target], Awaitable[T]],
    ) -> T:
        """`call` with the request as prepared (naming a cache, or whole); a cache Gemini
        says is gone is recreated and the call made again, once."""
        stale: str | None = None
        while True:
            prepared = await self._prepare(canonical, target, stale)
            try:
                return await call(prepared.request, target)
            except ProviderError as error:
                if not _retry_after(error, prepared, stale):
                    raise
                stale = prepared.cache

    async def _prepare(self, canonical: JSON, target: Target, stale: str | None) -> Prepared:
        """The request to send: naming a cache when the markers ask for one and it can be had,
        else the whole request (markers dropped and recorded)."""
        with translating(target.label):
            plan = self.gemini.plan_cache(canonical, target)
            plain = plan is None or isinstance(plan, Uncached) or self.registry.store is None
            if plain:
                if isinstance(plan, Uncached):
                    _drop(plan.markers, plan.reason, plan.detail, target)
                return Prepared(self.adapter.build_request(canonical, target), None)
        assert isinstance(plan, CachePlan)
        name = await self._cache_name(plan, target, stale)
        with translating(target.label):
            if name is None:
                return Prepared(self.adapter.build_request(canonical, target), None)
            return Prepared(self.gemini.build_cached_request(canonical, target, plan, name), name)

    async def _cache_name(self, plan: CachePlan, target: Target, stale: str | None) -> str | None:
        settings = self.gemini.settings(target.provider)
        key = registry_key(plan, target, settings.models_url)
        entry = await self.registry.lookup(key)
        now = time.time()
        if entry is not None and entry.name != stale and entry.usable(now):
            _count("reused")
            return entry.name
        if entry is not None and stale is None:
            stale = entry.name  # expired: its replacement is a new generation
        claimed = await self.registry.claim(key, stale)
        if claimed is None:
            _drop(plan.markers, "cache_unavailable", "the state store is unavailable", target)
            return None
        if claimed:
            try:
                async with asyncio.timeout(LOCK_TTL_S):
                    entry = await self._create(plan, target)
            except (ProviderError, TimeoutError) as error:
                _drop(plan.markers, *_refusal(error), target)
                return None
            await self.registry.record(key, entry)
            _count("recreated" if stale else "created")
            return entry.name
        entry = await self.registry.wait(key, stale)
        if entry is None:
            _drop(plan.markers, "cache_pending", "still being created elsewhere", target)
            return None
        _count("reused")
        return entry.name

    async def _create(self, plan: CachePlan, target: Target) -> Entry:
        request = self.gemini.build_cache_create(plan, target)
        _, body = await self._transport.fetch(request, target, self._parse_error)
        payload = upstream_object(body, "a cachedContents answer that is not JSON")
        name = payload.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise invalid_upstream("a cachedContents answer without a valid name")
        fallback = time.time() + plan.ttl_s
        return Entry(name, parse_expiry(payload.get("expireTime"), fallback))


def _retry_after(error: ProviderError, prepared: Prepared, stale: str | None) -> bool:
    """Gemini answers 403 (or 404) to a request naming a cache that no longer exists: the
    first time, the cache is recreated and the request sent again."""
    return prepared.cache is not None and stale is None and error.upstream_status in _GONE


def _refusal(error: BaseException) -> tuple[str, str]:
    if isinstance(error, TimeoutError):
        return "cache_failed", "creating the context cache timed out"
    if isinstance(error, ProviderError) and error.failure_class is FailureClass.CLIENT_ERROR:
        return "cache_refused", "Gemini refused the context cache (too small or not cacheable)"
    return "cache_failed", "the context cache could not be created"
