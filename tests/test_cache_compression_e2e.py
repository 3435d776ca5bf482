"""Compressed response-cache entries in Redis (core.cache.backend), end to end: the official
OpenAI SDK -> edge -> core -> the fake OpenAI, the entries read and tampered with in a private
Redis. A large answer is stored compressed behind its marker byte and answers hits; a small
one stays raw; an entry that no longer decodes is a miss (a fresh upstream call), never a 5xx.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from core.state.resp import RespClient
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_openai import TEXT, FakeOpenAI
from tests.support.stack import Stack
from tests.test_response_cache_e2e import cache_overrides


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    fake: FakeOpenAI,
    claude: FakeAnthropic,
    redis_url: str,
) -> Iterator[Stack]:
    overrides = cache_overrides(fake, claude)
    overrides["state"] = {"redis_url": redis_url}
    overrides["models"]["gpt-echo"] = {"provider": "fake", "model": "tool-loop"}
    running = Stack(tmp_path_factory.mktemp("cache-zlib"), overrides).start()
    yield running
    running.stop()


def _redis(redis_url: str, *args: Any) -> Any:
    async def main() -> Any:
        client = RespClient(redis_url)
        try:
            return await client.call(*args)
        finally:
            await client.close()

    return asyncio.run(main())


def _entries(redis_url: str, tenant: str) -> dict[str, bytes]:
    """The tenant's response-cache entries as stored (core.cache.key: ilc:{tag}:digest; the
    coalescing lock and chunk lists live under longer names)."""
    tag = hashlib.blake2b(tenant.encode(), digest_size=8).hexdigest()
    keys = [k.decode() for k in _redis(redis_url, "KEYS", f"ilc:{{{tag}}}:*")]
    return {k: _redis(redis_url, "GET", k) for k in keys if k.count(":") == 2}


def _echo(document: str) -> list[Any]:
    """A conversation the fake's `tool-loop` answers with the tool's text: a large answer."""
    call = {"id": "c1", "type": "function", "function": {"name": "read", "arguments": "{}"}}
    return [
        {"role": "user", "content": "Read it."},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": document},
    ]


def _ask(stack: Stack, tenant: str, model: str, messages: list[Any]) -> Any:
    sdk = openai.OpenAI(
        base_url=f"{stack.edge_url}/v1", api_key=stack.token(tenant=tenant), max_retries=0
    )
    return sdk.chat.completions.with_raw_response.create(model=model, messages=messages)


def test_large_answers_are_stored_compressed_and_hit(
    stack: Stack, fake: FakeOpenAI, redis_url: str
) -> None:
    tenant = f"zlib-{uuid.uuid4().hex[:8]}"
    document = " ".join(f"line {i % 50} of the report says nothing new" for i in range(400))
    first = _ask(stack, tenant, "gpt-echo", _echo(document))
    assert first.headers["x-interlock-cache"] == "miss"
    [stored] = _entries(redis_url, tenant).values()
    assert stored[:1] == b"\x01"  # the marker byte: compressed
    assert len(stored) < len(document) // 2
    calls = len(fake.received)
    second = _ask(stack, tenant, "gpt-echo", _echo(document))
    assert second.headers["x-interlock-cache"] == "hit"
    assert len(fake.received) == calls
    assert second.parse().choices[0].message.content == "Tool results: " + document
    assert second.parse().model_dump() == first.parse().model_dump()


def test_small_answers_stay_raw(stack: Stack, redis_url: str) -> None:
    tenant = f"raw-{uuid.uuid4().hex[:8]}"
    messages = [{"role": "user", "content": f"hello {uuid.uuid4().hex}"}]
    assert _ask(stack, tenant, "gpt-fake", messages).headers["x-interlock-cache"] == "miss"
    [stored] = _entries(redis_url, tenant).values()
    assert stored.startswith(b'{"at":')
    hit = _ask(stack, tenant, "gpt-fake", messages)
    assert hit.headers["x-interlock-cache"] == "hit"
    assert hit.parse().choices[0].message.content == TEXT


@pytest.mark.parametrize(
    "damage",
    [
        lambda value: value[: len(value) // 2],  # truncated compressed entry
        lambda value: b"\x01" + b"\x00" * 64,  # the marker, then no zlib stream
        lambda value: b"\x02" + value[1:],  # an unknown marker byte
    ],
)
def test_an_entry_that_does_not_decode_is_a_miss(
    stack: Stack, fake: FakeOpenAI, redis_url: str, damage: Any
) -> None:
    tenant = f"bad-{uuid.uuid4().hex[:8]}"
    document = " ".join(f"paragraph {i % 40} repeats itself" for i in range(500))
    _ask(stack, tenant, "gpt-echo", _echo(document))
    [(key, stored)] = _entries(redis_url, tenant).items()
    assert stored[:1] == b"\x01"
    _redis(redis_url, "SET", key, damage(stored), "PX", 60_000)
    calls = len(fake.received)
    again = _ask(stack, tenant, "gpt-echo", _echo(document))
    assert again.status_code == 200 and again.headers["x-interlock-cache"] == "miss"
    assert len(fake.received) == calls + 1  # answered upstream, then stored afresh
    assert again.parse().choices[0].message.content == "Tool results: " + document
    assert _entries(redis_url, tenant)[key][:1] == b"\x01"
    assert _ask(stack, tenant, "gpt-echo", _echo(document)).headers["x-interlock-cache"] == "hit"
