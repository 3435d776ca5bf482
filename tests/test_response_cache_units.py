"""The response cache's parts on their own: config (errors name the key path, precedence),
keys and Cache-Control, the in-memory backend's bound, and the round trips between a complete
answer and its stream (core.cache.replay then core.cache.assemble give back the answer)."""

from __future__ import annotations

import asyncio
import os
import zlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from core.cache import assemble, backend, replay
from core.cache.backend import Entry, MemoryBackend
from core.cache.key import cache_key, directives
from shared.config import parse_config
from shared.config_cache import parse_cache
from shared.configparse import ConfigError
from shared.errors import GatewayError

MODELS = frozenset(("m1", "m2"))


def test_config_errors_name_the_key_path() -> None:
    cases = {
        "cache.models.nope: not a configured name": {"models": {"nope": {"enabled": True}}},
        "cache.routes.r9: not a configured name": {"routes": {"r9": {}}},
        "cache.tenants.acme.enabled: expected true or false": {
            "tenants": {"acme": {"enabled": "yes"}}
        },
        "cache.ttl: expected a duration from 1s to 30d": {"ttl": "0s"},
        "cache.max_bytes: expected a size": {"max_bytes": "lots"},
        "cache.colour: unknown key": {"colour": 1},
    }
    for message, raw in cases.items():
        with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
            parse_cache(raw, MODELS, frozenset())


def test_policy_precedence_tenant_route_model_default() -> None:
    config = parse_cache(
        {
            "ttl": "5m",
            "models": {"m1": {"enabled": True, "ttl": "1m"}},
            "routes": {"r": {"max_entry_bytes": "2KiB"}},
            "tenants": {"acme": {"enabled": False}},
        },
        MODELS,
        frozenset({"r"}),
    )
    assert config.used and not config.enabled
    on = config.policy("other", "r", "m1")
    assert (on.enabled, on.ttl_s, on.max_entry_bytes) == (True, 60.0, 2048)
    assert not config.policy("acme", "r", "m1").enabled
    assert not config.policy("other", "m2", "m2").enabled


def test_the_section_is_part_of_the_file() -> None:
    raw = {
        "providers": {"mock": {"kind": "mock"}},
        "models": {"m1": {"provider": "mock", "model": "m1"}},
        "cache": {"enabled": True, "ttl": "2m"},
        "idempotency": {"ttl": "1h"},
    }
    config = parse_config(raw, "test", {})
    assert config.cache.enabled and config.cache.ttl_s == 120
    assert config.idempotency.ttl_s == 3600
    with pytest.raises(ConfigError, match=r"idempotency\.ttl"):
        parse_config({**raw, "idempotency": {"ttl": "0s"}}, "test", {})


def test_keys_ignore_stream_and_bookkeeping_but_not_tenant_or_route() -> None:
    body: dict[str, Any] = {"model": "a", "messages": [{"role": "user", "content": "hi"}]}
    key = cache_key("acme", "chat", "r", body, {})
    same = {**body, "model": "alias", "stream": True, "user": "u", "metadata": {"k": "v"}}
    assert cache_key("acme", "chat", "r", same, {}) == key
    assert cache_key("other", "chat", "r", body, {}) != key
    assert cache_key("acme", "chat", "r2", body, {}) != key
    assert cache_key("acme", "chat", "r", {**body, "temperature": 0.5}, {}) != key
    assert cache_key("acme", "messages", "r", body, {}) != key
    reordered = {"messages": body["messages"], "model": "a"}
    assert cache_key("acme", "chat", "r", reordered, {}) == key
    assert key.startswith("ilc:{") and "acme" not in key  # the tenant's digest, hash-tagged


def test_cache_control() -> None:
    assert directives(None) == directives("")
    parsed = directives("no-cache, max-age=30, private")
    assert parsed.no_cache and not parsed.no_store and parsed.max_age == 30
    assert directives("No-Store").no_store
    with pytest.raises(GatewayError) as caught:
        directives("max-age=-1")
    assert caught.value.param == "Cache-Control" and caught.value.status == 400


def test_memory_backend_is_bounded_by_bytes_lru() -> None:
    async def main() -> None:
        backend = MemoryBackend(max_bytes=100)
        await backend.set("a", b"x" * 40, 60)
        await backend.set("b", b"y" * 40, 60)
        assert await backend.get("a") is not None  # a is now the most recently used
        await backend.set("c", b"z" * 40, 60)  # evicts b
        assert await backend.get("b") is None
        assert await backend.get("a") is not None and await backend.get("c") is not None
        assert backend.size == 80 and len(backend) == 2
        await backend.set("huge", b"h" * 101, 60)  # larger than the whole cache: not kept
        assert await backend.get("huge") is None and backend.size == 80
        await backend.set("gone", b"g", 0)
        assert await backend.get("gone") is None

    asyncio.run(main())


def test_entry_round_trip() -> None:
    entry = Entry(1000.5, {"total_tokens": 3}, b'{"a":"b\\nc"}')
    assert Entry.decode(entry.encode()) == entry
    assert Entry.decode(b"garbage") is None


def _large_body(chars: int) -> bytes:
    words = ("the", "gateway", "caches", "answers", "for", "every", "tenant", "alone")
    text = " ".join(words[(i * 7 + i // 3) % len(words)] for i in range(chars // 5))
    return orjson.dumps({"choices": [{"message": {"content": text}}]})


def test_small_entries_stay_raw_and_large_ones_are_compressed() -> None:
    small = Entry(1.0, None, b'{"ok":true}')
    assert small.encode().startswith(b"{")  # raw: the JSON header first
    large = Entry(2.5, {"total_tokens": 9}, _large_body(20_000))
    packed = large.encode()
    assert packed[:1] == b"\x01"  # the marker byte of a compressed entry
    assert len(packed) < len(large.body) // 2
    assert Entry.decode(packed) == large
    # An entry written before compression existed (raw, however large) still decodes.
    legacy = orjson.dumps({"at": 2.5, "usage": {"total_tokens": 9}}) + b"\n" + large.body
    assert len(legacy) > backend.COMPRESS_FROM and Entry.decode(legacy) == large


def test_incompressible_entries_stay_raw() -> None:
    noise = Entry(3.0, None, os.urandom(9000))  # deflate would only make it longer
    assert noise.encode().startswith(b"{") and Entry.decode(noise.encode()) == noise


def test_a_corrupted_compressed_entry_is_a_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    packed = Entry(2.5, None, _large_body(20_000)).encode()
    assert Entry.decode(packed[:-10]) is None  # truncated
    assert Entry.decode(packed + b"trailing") is None
    assert Entry.decode(packed[:40] + bytes(b ^ 0x5A for b in packed[40:80]) + packed[80:]) is None
    assert Entry.decode(b"\x01") is None and Entry.decode(b"\x01not zlib") is None
    # A whole zlib stream that is not an entry, and one inflating past the cap.
    assert Entry.decode(b"\x01" + zlib.compress(b"no header line")) is None
    monkeypatch.setattr(backend, "MAX_INFLATED", 1000)
    assert Entry.decode(packed) is None


async def _joined(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([part async for part in stream])


COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hi there",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"x": 1}'},
                    }
                ],
            },
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
}


def test_chat_replay_then_assemble_gives_the_completion_back() -> None:
    raw = asyncio.run(_joined(replay.chat_stream(orjson.dumps(COMPLETION), True)))
    assert raw.endswith(b"data: [DONE]\n\n")
    assert assemble.chat_completion(raw, None) == COMPLETION
    hidden = asyncio.run(_joined(replay.chat_stream(orjson.dumps(COMPLETION), False)))
    assert b'"usage"' not in hidden  # shown only when the client asked
    assert assemble.chat_completion(hidden, COMPLETION["usage"]) == COMPLETION
    cut = raw.replace(b"data: [DONE]\n\n", b'data: {"error": {"message": "x"}}\n\n')
    assert assemble.chat_completion(cut, None) is None  # a cut stream is never stored


MESSAGE: dict[str, Any] = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude",
    "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "text", "text": "Hello"},
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"x": [1, 2]}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {"input_tokens": 4, "output_tokens": 9},
}


def test_messages_replay_then_assemble_gives_the_message_back() -> None:
    raw = asyncio.run(_joined(replay.messages_stream(orjson.dumps(MESSAGE))))
    assert raw.startswith(b"event: message_start\n")
    assert raw.endswith(b'data: {"type":"message_stop"}\n\n')
    assert assemble.anthropic_message(raw) == MESSAGE
    assert assemble.anthropic_message(raw.rsplit(b"event: message_stop", 1)[0]) is None
