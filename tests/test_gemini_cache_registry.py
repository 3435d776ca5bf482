"""The Gemini context cache registry in process (core.providers.gemini_cache): a GeminiUpstream
built as the core builds it, against the fake Gemini over loopback, with a MemoryStore (the
embedded default) or a store that refuses every call (Redis down under fail_closed)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from core.observe import context as requestctx
from core.providers.adapters.base import Target
from core.providers.client import ProviderClient
from core.providers.gemini_cache import (
    CacheRegistry,
    Entry,
    GeminiUpstream,
    cache_counts,
)
from core.providers.provider import build_provider
from core.state.store import MemoryStore
from core.wire.prompt_cache import collect_dropped
from shared.config import parse_config
from shared.errors import GatewayError
from tests.support.fake_gemini import FakeGemini

DOC = "The quick brown fox jumps over the lazy dog. " * 130
MARKED: list[Any] = [
    {"role": "system", "content": DOC, "cache_control": {"type": "ephemeral"}},
    {"role": "user", "content": "What jumps?"},
]


class DownStore(MemoryStore):
    """Every call refused, as ResilientStore refuses them under fail_closed."""

    async def get(self, key: str) -> bytes | None:
        raise GatewayError(503, "the gateway's shared state is unavailable")

    async def claim(self, key: str, ttl_s: float) -> bool:
        raise GatewayError(503, "the gateway's shared state is unavailable")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGemini]:
    server = FakeGemini()
    server.start()
    yield server
    server.stop()


async def _complete(fake: FakeGemini, store: MemoryStore, messages: list[Any]) -> list[Any]:
    """One request through a GeminiUpstream; the markers it dropped."""
    async with ProviderClient(8) as session:
        gemini = {"kind": "gemini", "base_url": fake.url, "api_key": fake.api_key}
        raw = {"hop": {"secret": "s" * 40}, "providers": {"g": gemini}}
        config = parse_config(raw, "test", {})
        provider = build_provider(config.providers["g"], config.core, lambda: session)
        upstream = provider.upstream
        assert isinstance(upstream, GeminiUpstream)
        upstream.attach(store)
        requestctx.bind("acme", "req-1")
        dropped = collect_dropped()
        target = Target(provider, "gemini-2.5-flash", provider.api_keys[0])
        answer = await upstream.complete({"model": "x", "messages": messages}, target)
        assert answer["choices"][0]["message"]["content"] == "Hello from Gemini."
        return dropped


def test_memory_store_registry_creates_once_and_reuses(fake: FakeGemini) -> None:
    fake.reset()
    store = MemoryStore()
    before = cache_counts()
    assert asyncio.run(_complete(fake, store, MARKED)) == []
    assert asyncio.run(_complete(fake, store, MARKED)) == []
    assert fake.caches.created["gemini-2.5-flash"] == 1
    after = cache_counts()
    assert after.get("created", 0) - before.get("created", 0) == 1
    assert after.get("reused", 0) - before.get("reused", 0) == 1


def test_store_down_sends_uncached_at_once_and_names_the_marker(fake: FakeGemini) -> None:
    fake.reset()
    started = time.monotonic()
    dropped = asyncio.run(_complete(fake, DownStore(), MARKED))
    assert time.monotonic() - started < 2  # no waiting for a replica that cannot exist
    assert dropped == [("messages[0]", "cache_unavailable")]
    assert fake.caches.created["gemini-2.5-flash"] == 0
    [sent] = fake.for_model("gemini-2.5-flash")
    assert "cachedContent" not in sent.json and "systemInstruction" in sent.json


def test_below_minimum_is_listed_as_dropped(fake: FakeGemini) -> None:
    fake.reset()
    short: list[Any] = [
        {"role": "system", "content": "Be brief.", "cache_control": {"type": "ephemeral"}},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "there"},
            ],
        },
    ]
    dropped = asyncio.run(_complete(fake, MemoryStore(), short))
    assert dropped == [
        ("messages[0]", "below_minimum"),
        ("messages[1].content[0]", "below_minimum"),
    ]
    assert fake.caches.created["gemini-2.5-flash"] == 0


def test_a_cache_gemini_refuses_goes_uncached(fake: FakeGemini) -> None:
    """Our estimate said big enough, Gemini's count says not: a 400 on create, never an error."""
    fake.reset()
    padded: list[Any] = [
        {"role": "system", "content": "x " * 2100, "cache_control": {"type": "ephemeral"}},
        {"role": "user", "content": "q"},
    ]
    original = fake.caches.create

    def stricter(body: Any, scope: str | None, check: Any) -> dict[str, Any]:
        from tests.support.fake_gemini_cache import CacheError

        raise CacheError(400, "INVALID_ARGUMENT", "Cached content is too small.")

    fake.caches.create = stricter  # type: ignore[method-assign]
    try:
        dropped = asyncio.run(_complete(fake, MemoryStore(), padded))
    finally:
        fake.caches.create = original  # type: ignore[method-assign]
    assert dropped == [("messages[0]", "cache_refused")]
    [sent] = fake.for_model("gemini-2.5-flash")
    assert "cachedContent" not in sent.json


def test_registry_lock_is_per_generation() -> None:
    async def run() -> None:
        registry = CacheRegistry(MemoryStore())
        assert await registry.claim("k", None) is True
        assert await registry.claim("k", None) is False  # another replica is creating
        assert await registry.claim("k", "cachedContents/old") is True  # its replacement
        await registry.record("k", Entry("cachedContents/new", time.time() + 300))
        entry = await registry.lookup("k")
        assert entry is not None and entry.name == "cachedContents/new"
        assert entry.expires == pytest.approx(time.time() + 300, abs=2)
        assert await CacheRegistry(DownStore()).claim("k", None) is None
        assert await CacheRegistry(DownStore()).lookup("k") is None

    asyncio.run(run())
