"""The Responses API's pure parts: translation to the canonical form, the stream encoder's
event sequence, and the tenant-scoped store's bounds (with the in-memory store)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from core.api.responses.request import to_canonical, without_openai_only
from core.api.responses.store import ResponseStore
from core.api.responses.stream import ResponsesStreamEncoder
from core.cache.backend import MemoryBackend
from shared.config import parse_config
from shared.errors import GatewayError
from tests.support.stack import base_config


def test_calls_join_one_assistant_turn_and_reasoning_is_left_out() -> None:
    canonical = to_canonical(
        {
            "model": "m",
            "input": [
                {"type": "message", "role": "user", "content": "hi"},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "function_call", "call_id": "c1", "name": "a", "arguments": "{}"},
                {"type": "function_call", "call_id": "c2", "name": "b", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "one"},
                {"type": "function_call_output", "call_id": "c2", "output": "two"},
            ],
            "tool_choice": {"type": "function", "name": "a"},
        }
    )
    assistant = canonical["messages"][1]
    assert assistant["role"] == "assistant"
    assert [c["id"] for c in assistant["tool_calls"]] == ["c1", "c2"]
    assert [m["role"] for m in canonical["messages"]] == ["user", "assistant", "tool", "tool"]
    assert canonical["tool_choice"] == {"type": "function", "function": {"name": "a"}}


def test_history_skips_what_only_openai_could_take_but_input_refuses_it() -> None:
    history: list[Any] = [
        {"type": "message", "role": "user", "content": "earlier"},
        {"type": "web_search_call", "id": "ws_1"},
    ]
    canonical = to_canonical({"model": "m", "input": "now"}, history)
    assert [m["content"] for m in canonical["messages"]] == ["earlier", "now"]
    with pytest.raises(GatewayError) as info:
        to_canonical({"model": "m", "input": [{"type": "item_reference", "id": "x"}]})
    assert (info.value.param, info.value.code) == ("input[0].type", "unsupported_parameter")
    stripped = without_openai_only(
        {"model": "m", "input": "x", "tools": [{"type": "web_search"}, {"type": "function"}]}
    )
    assert stripped["tools"] == [{"type": "function"}]


def _events(raw: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: ")]


def test_encoder_closes_reasoning_first_and_numbers_every_event() -> None:
    finished: list[dict[str, Any]] = []
    encoder = ResponsesStreamEncoder(
        {"model": "m", "input": "x"}, "resp_1", "m", None, finished.append
    )
    chunks: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "delta": {"reasoning_content": "think"}}]},
        {"choices": [{"index": 0, "delta": {"content": "Hel"}}]},
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{"}}
                        ]
                    },
                }
            ]
        },
        {"choices": [{"index": 0, "delta": {"content": "lo"}}]},
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]},
                    "finish_reason": "tool_calls",
                }
            ]
        },
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}},
    ]
    raw = b"".join(encoder.chunk(c) or b"" for c in chunks) + encoder.done()
    events = _events(raw)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    kinds = [e["type"] for e in events]
    assert kinds.index("response.output_item.done") < kinds.index("response.content_part.added")
    final = events[-1]["response"]
    assert final["status"] == "completed"
    assert [i["type"] for i in final["output"]] == ["reasoning", "message", "function_call"]
    assert final["output"][1]["content"][0]["text"] == "Hello"
    assert final["output"][2]["arguments"] == "{}" and final["output"][2]["call_id"] == "c1"
    assert final["usage"]["total_tokens"] == 7 and finished[0]["id"] == "resp_1"


def test_encoder_error_ends_with_response_failed() -> None:
    encoder = ResponsesStreamEncoder({"model": "m", "input": "x"}, "resp_2", "m")
    raw = (encoder.chunk({"choices": [{"index": 0, "delta": {"content": "Hi"}}]}) or b"") + (
        encoder.error(GatewayError(502, "the upstream stream ended", code="upstream_error"))
    )
    events = _events(raw)
    assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "upstream_error"
    assert failed["output"][0]["status"] == "incomplete"


def test_store_bounds_scopes_and_deletes() -> None:
    async def run() -> None:
        store = ResponseStore(MemoryBackend(10_000), ttl_s=60, max_bytes=200)
        response = {"id": "resp_a", "output": []}
        assert await store.save("acme", response, ["x" * 10])
        assert not await store.save("acme", {"id": "resp_big"}, ["x" * 500])  # over the bound
        assert await store.load("acme", "resp_big") is None
        assert await store.load("acme:", "resp_a") is None  # another tenant's key
        assert await store.load("acme", "resp_a") == {"response": response, "items": ["x" * 10]}
        assert await store.delete("acme", "resp_a")
        assert await store.load("acme", "resp_a") is None
        assert not await store.delete("acme", "resp_a")

    asyncio.run(run())


def test_ttl_and_bound_are_configurable() -> None:
    raw = base_config(Path("/nonexistent"), 1, 2)
    raw["core"] = {**raw.get("core", {}), "responses_ttl": "2h", "responses_max_bytes": "64KiB"}
    core = parse_config(raw, "test", {}).core
    assert (core.responses_ttl_s, core.responses_max_bytes) == (7200.0, 64 * 1024)
