"""The built-in `mock` provider: deterministic answers with no network and no keys.

It lets `make run` work on a fresh machine and gives tests a provider with realistic usage
numbers. The text depends only on the request, so the same request always gets the same answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from typing import Any

from core.adapters.base import JSON, Capabilities, Target
from core.tokens import estimate_messages, estimate_text
from shared.configparse import ConfigError

_SENTENCES = (
    "Interlock routed this request to the built-in mock provider.",
    "The answer is deterministic, so the same request always gets the same words.",
    "Point a model at a real provider in interlock.yaml to get real completions.",
    "Streaming, usage accounting and tenant tokens all work exactly as they would upstream.",
    "No keys and no network are needed for this response.",
)


class MockUpstream:
    """Options: `delay_ms` before the first byte, `chunk_delay_ms` between stream chunks."""

    def __init__(self, options: dict[str, Any], path: str) -> None:
        self.delay_s = _milliseconds(options, "delay_ms", path) / 1000
        self.chunk_delay_s = _milliseconds(options, "chunk_delay_ms", path) / 1000
        unknown = set(options) - {"delay_ms", "chunk_delay_ms"}
        if unknown:
            raise ConfigError(f"{path}.{sorted(unknown)[0]}: unknown mock option")

    def capabilities(self, target: Target) -> Capabilities:
        return Capabilities()  # it ignores what it cannot act on, like tools, by design

    async def complete(self, canonical: JSON, target: Target) -> JSON:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        words, finish = _answer(canonical)
        text = " ".join(words)
        prompt = estimate_messages(canonical["messages"])
        completion = estimate_text(text)
        return {
            "id": _completion_id(canonical),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": target.model,
            "system_fingerprint": "fp_interlock_mock",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
            "usage": _usage(prompt, completion),
        }

    async def stream(self, canonical: JSON, target: Target) -> AsyncIterator[JSON]:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        words, finish = _answer(canonical)
        base = {
            "id": _completion_id(canonical),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": target.model,
            "system_fingerprint": "fp_interlock_mock",
        }
        yield {**base, "choices": [_delta({"role": "assistant", "content": ""})]}
        for i, word in enumerate(words):
            if self.chunk_delay_s:
                await asyncio.sleep(self.chunk_delay_s)
            yield {**base, "choices": [_delta({"content": word if i == 0 else " " + word})]}
        yield {**base, "choices": [_delta({}, finish)]}
        prompt = estimate_messages(canonical["messages"])
        completion = estimate_text(" ".join(words))
        yield {**base, "choices": [], "usage": _usage(prompt, completion)}


def _milliseconds(options: dict[str, Any], key: str, path: str) -> float:
    value = options.get(key, 0)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{path}.{key}: expected a non-negative number of milliseconds")
    return float(value)


def _digest(canonical: JSON) -> bytes:
    last = canonical["messages"][-1]
    content = last.get("content") if isinstance(last, dict) else None
    return hashlib.blake2b(repr(content).encode(), digest_size=8).digest()


def _completion_id(canonical: JSON) -> str:
    return "chatcmpl-mock" + _digest(canonical).hex()


def _answer(canonical: JSON) -> tuple[list[str], str]:
    digest = _digest(canonical)
    first = digest[0] % len(_SENTENCES)
    text = " ".join(_SENTENCES[(first + i) % len(_SENTENCES)] for i in range(2))
    words = text.split()
    limit = canonical.get("max_completion_tokens") or canonical.get("max_tokens")
    if isinstance(limit, int) and 0 < limit < len(words):
        return words[:limit], "length"
    return words, "stop"


def _delta(delta: dict[str, Any], finish: str | None = None) -> JSON:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}


def _usage(prompt: int, completion: int) -> JSON:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }
