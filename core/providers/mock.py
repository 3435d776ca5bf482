"""The built-in `mock` provider: deterministic answers with no network and no keys.

It lets `make run` work on a fresh machine and gives tests a provider with realistic usage
numbers. The text depends only on the request, so the same request always gets the same answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from core.providers.adapters.base import JSON, Capabilities, Target
from core.providers.adapters.options import check_keys
from core.providers.mock_schema import schema_instance
from core.providers.upstream import translating
from core.wire.tokens import estimate_messages, estimate_text
from shared.configparse import ConfigError, keys_of

_SENTENCES = (
    "Interlock routed this request to the built-in mock provider.",
    "The answer is deterministic, so the same request always gets the same words.",
    "Point a model at a real provider in interlock.yaml to get real completions.",
    "Streaming, usage accounting and tenant tokens all work exactly as they would upstream.",
    "No keys and no network are needed for this response.",
)


@dataclass(frozen=True, slots=True)
class MockOptions:
    """`providers.<name>.options` for kind mock, parsed once at start-up."""

    delay_ms: float = 0.0  # before the first byte
    chunk_delay_ms: float = 0.0  # between stream chunks


def parse_mock_options(options: Mapping[str, Any], path: str) -> MockOptions:
    """The typed options; an unknown key or a bad value is a ConfigError naming it."""
    check_keys(options, keys_of(MockOptions), path)
    return MockOptions(
        delay_ms=_milliseconds(options, "delay_ms", path),
        chunk_delay_ms=_milliseconds(options, "chunk_delay_ms", path),
    )


class MockUpstream:
    """Answers in-process, after the delays its options ask for."""

    def __init__(self, options: MockOptions) -> None:
        self.delay_s = options.delay_ms / 1000
        self.chunk_delay_s = options.chunk_delay_ms / 1000

    def capabilities(self, target: Target) -> Capabilities:
        return Capabilities()  # tools and structured outputs are acted on, see _reply

    async def complete(self, canonical: JSON, target: Target) -> JSON:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        with translating(target.label):  # the mock reads the client's payload as adapters do
            reply = _reply(canonical)
        message: JSON = {"role": "assistant", "content": reply.text, "refusal": None}
        if reply.call is not None:
            message["tool_calls"] = [reply.call]
        return {
            "id": _completion_id(canonical),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": target.model,
            "system_fingerprint": "fp_interlock_mock",
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish}
            ],
            "usage": _usage(estimate_messages(canonical["messages"]), reply.tokens),
        }

    async def stream(self, canonical: JSON, target: Target) -> AsyncIterator[JSON]:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        with translating(target.label):
            reply = _reply(canonical)
        base = {
            "id": _completion_id(canonical),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": target.model,
            "system_fingerprint": "fp_interlock_mock",
        }
        yield {**base, "choices": [_delta({"role": "assistant", "content": ""})]}
        for delta in reply.deltas():
            if self.chunk_delay_s:
                await asyncio.sleep(self.chunk_delay_s)
            yield {**base, "choices": [_delta(delta)]}
        yield {**base, "choices": [_delta({}, reply.finish)]}
        prompt = estimate_messages(canonical["messages"])
        yield {**base, "choices": [], "usage": _usage(prompt, reply.tokens)}


@dataclass(frozen=True, slots=True)
class _Reply:
    text: str | None
    call: JSON | None
    finish: str

    @property
    def tokens(self) -> int:
        if self.call is not None:
            return estimate_text(self.call["function"]["name"] + self.call["function"]["arguments"])
        return estimate_text(self.text or "")

    def deltas(self) -> list[JSON]:
        if self.call is not None:
            function = self.call["function"]
            head = {
                "index": 0,
                "id": self.call["id"],
                "type": "function",
                "function": {"name": function["name"], "arguments": ""},
            }
            half = len(function["arguments"]) // 2
            return [
                {"tool_calls": [head]},
                {
                    "tool_calls": [
                        {"index": 0, "function": {"arguments": function["arguments"][:half]}}
                    ]
                },
                {
                    "tool_calls": [
                        {"index": 0, "function": {"arguments": function["arguments"][half:]}}
                    ]
                },
            ]
        words = (self.text or "").split(" ")
        return [{"content": word if i == 0 else " " + word} for i, word in enumerate(words)]


def _reply(canonical: JSON) -> _Reply:
    """Tools: call the chosen (or first) tool with schema-shaped arguments, then answer in
    prose once its result is back. response_format: valid JSON. Otherwise: sentences."""
    tools = canonical.get("tools") or []
    choice = canonical.get("tool_choice")
    messages = canonical["messages"]
    last_role = messages[-1].get("role") if isinstance(messages[-1], dict) else None
    if tools and choice != "none" and last_role != "tool":
        function = _chosen_function(tools, choice)
        if function is not None:
            arguments = orjson.dumps(schema_instance(function.get("parameters") or {})).decode()
            call_id = "call_mock" + _digest(canonical).hex()[:16]
            call = {
                "id": call_id,
                "type": "function",
                "function": {"name": function.get("name", "tool"), "arguments": arguments},
            }
            return _Reply(None, call, "tool_calls")
    words, finish = _answer(canonical)
    response_format = canonical.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        return _Reply(orjson.dumps(schema_instance(schema)).decode(), None, "stop")
    if response_format.get("type") == "json_object":
        return _Reply(orjson.dumps({"answer": " ".join(words)}).decode(), None, "stop")
    return _Reply(" ".join(words), None, finish)


def _chosen_function(tools: list[Any], choice: Any) -> dict[str, Any] | None:
    functions: list[dict[str, Any]] = [
        t["function"] for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)
    ]
    if isinstance(choice, dict):
        chosen = choice.get("function")
        name = chosen.get("name") if isinstance(chosen, dict) else None
        return next((f for f in functions if f.get("name") == name), None)
    return functions[0] if functions else None


def _milliseconds(options: Mapping[str, Any], key: str, path: str) -> float:
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
