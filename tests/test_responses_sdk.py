"""The official OpenAI SDK's Responses API (client.responses) -> edge -> core -> providers.

Real loopback sockets: the edge and core as processes, the fake providers of tests/support
(OpenAI-compatible chat, OpenAI's own Responses API, Anthropic), and the SDK as the client.
Translated targets and the OpenAI passthrough, created and streamed (the SDK's
`responses.stream()` helper checks the event order and ids), function tools round trips, a
failure after the first byte, a failover and the ledger record
(client errors: tests/test_responses_errors.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.fake_anthropic import TEXT as CLAUDE_TEXT
from tests.support.fake_anthropic import THINKING, FakeAnthropic
from tests.support.fake_openai import CACHED, JSON_ANSWER, TEXT, FakeOpenAI
from tests.support.fake_openai_responses import ENCRYPTED
from tests.support.ledger_load import sqlite_rows
from tests.support.stack import Stack
from tests.test_conformance_responses import SCHEMA

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
RESULTS = {"call_weather_1": "18C", "call_stock_2": "$42"}


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI, claude: FakeAnthropic
) -> Iterator[Stack]:
    compat = {"kind": "openai", "base_url": fake.base_url, "api_key": "sk-up"}
    overrides = {
        "providers": {
            "fake": {**compat, "allow_any_model": True},
            "native": {**compat, "options": {"preset": "openai"}, "allow_any_model": True},
            "deepseek": {**compat, "options": {"preset": "deepseek"}, "allow_any_model": True},
            "claude": {
                "kind": "anthropic",
                "base_url": claude.url,
                "api_key": "sk-ant-up",
                "allow_any_model": True,
            },
        },
        "models": {
            "gpt-fake": {"provider": "fake", "model": "gpt-fake"},
            "gpt-native": {"provider": "native", "model": "gpt-5-native"},
            "claude": {"provider": "claude", "model": "claude-x"},
            "failover": {
                "targets": [
                    {"provider": "fake", "model": "fail-500"},
                    {"provider": "claude", "model": "claude-x"},
                ]
            },
            "skips-deepseek": {
                "targets": [
                    {"provider": "deepseek", "model": "json"},
                    {"provider": "claude", "model": "json"},
                ]
            },
            "native-first": {
                "targets": [
                    {"provider": "native", "model": "fail-500"},
                    {"provider": "claude", "model": "claude-x"},
                ]
            },
        },
        "ledger": {"flush_interval": "50ms"},
    }
    running = Stack(tmp_path_factory.mktemp("responses-sdk"), overrides).start()
    yield running
    running.stop()


def ledger_path(stack: Stack) -> Path:
    return stack.workdir / "state" / "ledger.sqlite3"


def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.edge_url}/v1", api_key=stack.token(), max_retries=0)


def last_json(fake: FakeOpenAI | FakeAnthropic) -> dict[str, Any]:
    body: dict[str, Any] = fake.received[-1].json
    return body


def check_sequence(events: list[Any]) -> None:
    """Numbered from 0 without gaps; every item event names an item that was added."""
    assert [e.sequence_number for e in events] == list(range(len(events)))
    added = {e.item.id: e.output_index for e in events if e.type == "response.output_item.added"}
    for event in events:
        item_id = getattr(event, "item_id", None)
        if item_id is not None:
            assert added[item_id] == event.output_index


# --- translated targets ----------------------------------------------------------------


def test_create_translates_instructions_and_items(stack: Stack, fake: FakeOpenAI) -> None:
    image = "data:image/png;base64,iVBORw0KGgo="
    response = client(stack).responses.with_raw_response.create(
        model="gpt-fake",
        instructions="Be brief.",
        input=[
            {"role": "developer", "content": "Answer in English."},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": image, "detail": "low"},
                ],
            },
        ],
        max_output_tokens=50,
        temperature=0.2,
        store=False,
    )
    parsed = response.parse()
    assert parsed.status == "completed" and parsed.output_text == TEXT
    assert parsed.id.startswith("resp_") and parsed.output[0].type == "message"
    assert response.headers["x-interlock-provider"] == "fake"
    sent = last_json(fake)
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Answer in English."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": image, "detail": "low"}},
            ],
        },
    ]
    assert sent["max_tokens"] == 50 and sent["temperature"] == 0.2
    usage = parsed.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (12, 7, 19)


def test_cached_tokens_and_json_schema(stack: Stack, fake: FakeOpenAI) -> None:
    sdk = client(stack)
    cached = sdk.responses.create(model="fake/cache", input="hi", store=False)
    assert cached.usage is not None
    assert cached.usage.input_tokens_details.cached_tokens == CACHED
    answer = sdk.responses.create(
        model="fake/json", input="answer", text={"format": SCHEMA}, store=False
    )
    assert json.loads(answer.output_text) == JSON_ANSWER
    sent = last_json(fake)["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["schema"] == SCHEMA["schema"]


def test_stream_through_the_helper(stack: Stack) -> None:
    with client(stack).responses.stream(model="claude", input="Say hello") as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert final.output_text == CLAUDE_TEXT and final.status == "completed"
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    check_sequence(events)
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == CLAUDE_TEXT
    assert {e.response.id for e in events if hasattr(e, "response")} == {final.id}
    assert final.usage is not None and final.usage.output_tokens > 0


def test_reasoning_summary_and_effort(stack: Stack, claude: FakeAnthropic) -> None:
    sdk = client(stack)
    response = sdk.responses.create(model="claude/thinking", input="hi", store=False)
    assert [item.type for item in response.output] == ["reasoning", "message"]
    reasoning = response.output[0]
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == THINKING
    with sdk.responses.stream(model="claude/thinking", input="hi", store=False) as stream:
        events = list(stream)
    kinds = [e.type for e in events]
    assert "response.reasoning_summary_text.delta" in kinds
    assert kinds.index("response.output_item.done") < kinds.index("response.content_part.added")
    check_sequence(events)
    sdk.responses.create(
        model="claude", input="hi", reasoning={"effort": "low"}, max_output_tokens=5000
    )
    assert last_json(claude)["thinking"]["type"] == "enabled"


def test_length_stop_is_incomplete(stack: Stack) -> None:
    response = client(stack).responses.create(
        model="claude", input="hi", max_output_tokens=2, store=False
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"


def test_function_calls_round_trip(stack: Stack, fake: FakeOpenAI) -> None:
    sdk = client(stack)
    first = sdk.responses.create(
        model="fake/tool-loop", input="Weather and price?", tools=[WEATHER], store=False
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert [(c.call_id, c.name) for c in calls] == [
        ("call_weather_1", "get_weather"),
        ("call_stock_2", "get_stock_price"),
    ]
    outputs = [
        {"type": "function_call_output", "call_id": c.call_id, "output": RESULTS[c.call_id]}
        for c in calls
    ]
    history: list[Any] = [{"role": "user", "content": "Weather and price?"}]
    history += [c.model_dump(exclude_none=True) for c in calls]
    second = sdk.responses.create(
        model="fake/tool-loop", input=history + outputs, tools=[WEATHER], store=False
    )
    assert second.output_text == "Tool results: 18C | $42"
    sent = last_json(fake)["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool"]
    assert [c["id"] for c in sent[1]["tool_calls"]] == ["call_weather_1", "call_stock_2"]
    assert sent[0]["content"] == "Weather and price?"


def test_streamed_parallel_calls(stack: Stack) -> None:
    with client(stack).responses.stream(
        model="fake/tool-calls", input="both", tools=[WEATHER], store=False
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    check_sequence(events)
    calls = [item for item in final.output if item.type == "function_call"]
    assert [json.loads(c.arguments) for c in calls] == [{"city": "Paris"}, {"ticker": "ACME"}]
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert [e.arguments for e in done] == [c.arguments for c in calls]


def test_failure_after_the_first_byte(stack: Stack) -> None:
    events = list(client(stack).responses.create(model="fake/cut-stream", input="hi", stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and "response.output_text.delta" in kinds
    assert kinds[-2:] == ["error", "response.failed"]
    assert "response.completed" not in kinds
    failed = events[-1].response
    assert failed.status == "failed" and failed.error is not None
    with (
        pytest.raises(RuntimeError, match=r"response\.completed"),
        client(stack).responses.stream(model="fake/cut-stream", input="hi") as stream,
    ):
        stream.get_final_response()


def test_failover_to_the_next_target(stack: Stack) -> None:
    response = client(stack).responses.with_raw_response.create(model="failover", input="hi")
    assert response.parse().output_text == CLAUDE_TEXT
    assert response.headers["x-interlock-provider"] == "claude"
    assert response.headers["x-interlock-failovers"] == "1"


def test_routes_skip_targets_that_cannot_serve(stack: Stack, fake: FakeOpenAI) -> None:
    before = len(fake.received)
    response = client(stack).responses.with_raw_response.create(
        model="skips-deepseek", input="answer", text={"format": SCHEMA}, store=False
    )
    assert json.loads(response.parse().output_text) == JSON_ANSWER
    assert response.headers["x-interlock-provider"] == "claude"
    assert response.headers["x-interlock-attempts"] == "1"  # deepseek declares no json_schema
    assert len(fake.received) == before


def test_the_ledger_records_chat_with_the_metadata_tags(stack: Stack) -> None:
    marker = "ledger-check-7"
    client(stack).responses.create(
        model="gpt-fake", input="hi", metadata={"customer": marker}, user="u-1", store=False
    )
    rows: list[Any] = []
    for _ in range(100):  # the writer flushes every 50 ms; other tests' records come first
        rows = [r for r in sqlite_rows(ledger_path(stack), 1) if marker in (r["tags"] or "")]
        if rows:
            break
        time.sleep(0.05)
    assert rows, "no ledger record with the request's metadata"
    row = rows[0]
    assert json.loads(row["tags"]) == {"customer": marker, "user": "u-1"}
    assert (row["api"], row["provider"], row["input"] + row["cache_read"]) == ("openai", "fake", 12)


# --- passthrough to OpenAI itself --------------------------------------------------------


def test_passthrough_relays_the_clients_request(stack: Stack, fake: FakeOpenAI) -> None:
    tools: Any = [WEATHER, {"type": "web_search"}]
    response = client(stack).responses.with_raw_response.create(
        model="gpt-native",
        input="hi",
        tools=tools,
        include=["reasoning.encrypted_content"],
        store=False,
    )
    parsed = response.parse()
    assert parsed.output_text == TEXT and parsed.id.startswith("resp_fake")
    reasoning = parsed.output[0]
    assert reasoning.type == "reasoning" and reasoning.encrypted_content == ENCRYPTED
    assert response.headers["x-interlock-provider"] == "native"
    received = fake.received[-1]
    assert received.path == "/v1/responses"
    assert received.headers["Authorization"] == "Bearer sk-up"
    assert received.json["model"] == "gpt-5-native" and received.json["tools"] == tools
    assert received.json["include"] == ["reasoning.encrypted_content"]


def test_passthrough_stream_and_its_cut(stack: Stack) -> None:
    sdk = client(stack)
    with sdk.responses.stream(model="native/gpt-5", input="hi", store=False) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert final.output_text == TEXT
    check_sequence(events)
    cut = list(sdk.responses.create(model="native/cut-stream", input="hi", stream=True))
    assert [e.type for e in cut][-2:] == ["error", "response.failed"]
    assert [e.sequence_number for e in cut] == list(range(len(cut)))


def test_passthrough_fails_over_to_a_translated_target(stack: Stack) -> None:
    response = client(stack).responses.with_raw_response.create(model="native-first", input="x")
    assert response.parse().output_text == CLAUDE_TEXT
    assert response.headers["x-interlock-failovers"] == "1"
