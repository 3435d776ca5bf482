"""The Responses API's part of the response cache (core.api.responses.cached) and its replay
(core.cache.replay.responses_stream), without sockets: what is kept of a stream (completed and
incomplete answers; never a failed or cut one), what keys a request (the history's content,
not its ids), a replay the official SDK's stream accumulator takes (reasoning, text, calls),
and a follower's events rewritten to ids of its own, consistently."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from openai import omit
from openai._models import construct_type
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import ResponseStreamEvent

from core.api.responses import cached
from core.api.responses.stream import ResponsesStreamEncoder
from core.cache.key import cache_key
from core.cache.replay import responses_stream
from shared.errors import GatewayError

REQUEST: dict[str, Any] = {"model": "m", "input": "hi", "metadata": {"a": "1"}}


def chunk(delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        out["usage"] = usage
    return out


def live_stream(finish: str = "stop") -> bytes:
    """A live translated stream: reasoning, text and a call, with a price on its usage."""
    encoder = ResponsesStreamEncoder(REQUEST, "resp_live", "m")
    usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    parts = [
        encoder.chunk(chunk({"reasoning_content": "thinking"})),
        encoder.chunk(chunk({"content": "Hello"})),
        encoder.chunk(
            chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "w"}}]})
        ),
        encoder.chunk(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]})),
        encoder.chunk(chunk({}, finish, usage)),
        encoder.done(),
    ]
    raw = b"".join(p for p in parts if p)
    return raw.replace(b'"total_tokens":8}', b'"total_tokens":8,"interlock_cost":"0.000100"}')


def events_of(raw: bytes) -> list[Any]:
    frames = [f for f in raw.split(b"\n\n") if f.strip()]
    return [orjson.loads(f.split(b"data: ", 1)[1]) for f in frames]


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([part async for part in stream])


def test_a_stream_keeps_its_final_response_without_its_price() -> None:
    kept = cached.entry_of(live_stream(), True)
    assert kept is not None
    response = orjson.loads(kept)
    assert response["id"] == "resp_live" and response["status"] == "completed"
    assert [item["type"] for item in response["output"]] == [
        "reasoning",
        "message",
        "function_call",
    ]
    assert "interlock_cost" not in response["usage"]
    incomplete = cached.entry_of(live_stream("length"), True)
    assert incomplete is not None and orjson.loads(incomplete)["status"] == "incomplete"


def test_a_failed_or_cut_stream_is_never_kept() -> None:
    encoder = ResponsesStreamEncoder(REQUEST, "resp_x", "m")
    started = encoder.chunk(chunk({"content": "Hel"})) or b""
    failed = started + encoder.error(GatewayError(502, "upstream broke", code="upstream"))
    assert cached.entry_of(failed, True) is None
    assert cached.entry_of(started, True) is None  # cut: no final event
    assert cached.entry_of(b"", True) is None
    assert cached.entry_of(b'{"object":"response","status":"failed"}', False) is None
    assert cached.entry_of(b"not json", False) is None
    assert cached.read(b"not json") is None and cached.read(b'{"object":"x"}') is None


def test_the_key_is_the_historys_content_not_its_ids() -> None:
    history = [{"id": "msg_1", "role": "user", "content": "hi"}]
    renamed = [{"id": "msg_2", "role": "user", "content": "hi"}]
    other = [{"id": "msg_1", "role": "user", "content": "bye"}]

    def key(body: dict[str, Any], items: Any, capped: bool = False) -> str:
        payload = cached.key_payload(body, items, 10, capped)
        return cache_key("acme", "responses", "r", payload, {})

    with_previous = {**REQUEST, "previous_response_id": "resp_a"}
    assert key(with_previous, history) == key({**REQUEST, "previous_response_id": "b"}, renamed)
    assert key(with_previous, history) != key(with_previous, other)
    assert key(REQUEST, None) != key(with_previous, history)
    assert key(REQUEST, None) != key(REQUEST, None, capped=True)
    assert key({**REQUEST, "store": False, "metadata": {}}, None) == key(REQUEST, None)
    assert key({**REQUEST, "tools": [{"type": "web_search"}]}, None) != key(REQUEST, None)
    assert cache_key("acme", "responses", "r", REQUEST, {}) != cache_key(
        "globex", "responses", "r", REQUEST, {}
    )


def test_a_replay_is_what_the_sdk_accumulates_into_the_same_response() -> None:
    kept = cached.read(cached.entry_of(live_stream(), True) or b"")
    assert kept is not None
    own = cached.fresh(kept, {**REQUEST, "metadata": {"b": "2"}}, {}, "resp_new", 1)
    events = events_of(asyncio.run(collect(responses_stream(own))))
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    seen = []
    for event in events:  # read as the SDK reads a stream; it checks ids and positions
        seen += state.handle_event(construct_type(type_=ResponseStreamEvent, value=event))
    assert seen[-1].type == "response.completed" and seen[-1].response.output_text == "Hello"
    final = events[-1]["response"]
    assert final["id"] == "resp_new" and final["metadata"] == {"b": "2"}
    assert [i["id"] for i in final["output"]] != [i["id"] for i in kept["output"]]
    assert final["output"][2]["call_id"] == "call_1"  # the model's call id is kept
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    arguments = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    summary = [e for e in events if e["type"] == "response.reasoning_summary_text.done"]
    assert text == "Hello" and arguments[0]["arguments"] == "{}"
    assert summary[0]["text"] == "thinking"


async def _rewritten(raw: bytes, saved: list[Any]) -> bytes:
    async def chunks() -> AsyncIterator[bytes]:
        for k in range(0, len(raw), 7):  # split anywhere, as a flight may hand it over
            yield raw[k : k + 7]

    async def save(response: Any) -> None:
        saved.append(response)

    rewrite = cached._Rewrite({**REQUEST, "store": True, "metadata": {"f": "1"}}, save)
    return await collect(rewrite.stream(chunks()))


def test_a_follower_gets_ids_of_its_own_consistently() -> None:
    saved: list[Any] = []
    leader = events_of(live_stream())
    events = events_of(asyncio.run(_rewritten(live_stream(), saved)))
    assert [e["type"] for e in events] == [e["type"] for e in leader]
    ids = {e["response"]["id"] for e in events if "response" in e}
    assert len(ids) == 1 and ids != {"resp_live"}
    final = events[-1]["response"]
    item_ids = {i["id"] for i in final["output"]}
    named = {e["item_id"] for e in events if "item_id" in e}
    assert named == item_ids and not item_ids & {i["id"] for i in leader[-1]["response"]["output"]}
    assert final["metadata"] == {"f": "1"}
    assert saved and saved[0]["id"] == final["id"] and "interlock_cost" not in saved[0]["usage"]


def test_a_cut_shared_stream_ends_as_the_responses_api_ends_one() -> None:
    """core.cache.follow ends a cut flight with chat's error frame; a Responses follower gets
    an `error` event and `response.failed`, numbered on, and nothing is stored."""
    leader = live_stream()
    frames = [f + b"\n\n" for f in leader.split(b"\n\n") if f.strip()]
    cut = GatewayError(503, "the shared answer ended early; retry", code="coalesced_stream_cut")
    raw = b"".join(frames[:8]) + b"data: " + cut.openai_body() + b"\n\n"
    saved: list[Any] = []
    events = events_of(asyncio.run(_rewritten(raw, saved)))
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-2]["code"] == "coalesced_stream_cut"
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["id"] == events[0]["response"]["id"]
    assert failed["error"]["code"] == "coalesced_stream_cut"
    assert [i["type"] for i in failed["output"]] == ["reasoning"]  # the items done so far
    assert saved == []
