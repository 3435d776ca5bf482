"""Prompt-cache gaps closed end to end (official SDKs -> edge -> core -> the fakes, which hold
the providers' own limits): an Anthropic Messages request passed through to Anthropic gets
the same limits and the same x-interlock-cache-dropped header as every translated request
(a fifth breakpoint, a prefix under the model's minimum, a 1-hour mark after a 5-minute one),
and a request within the limits is still sent as the client's own bytes.
"""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import orjson

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_bedrock import FakeBedrock
from tests.support.fake_openai import FakeOpenAI
from tests.support.stack import Stack
from tests.test_prompt_cache_e2e import EPHEMERAL, LONG, fakes, stack

__all__ = ["fakes", "stack"]  # the module-scoped fixtures, shared by import
Fakes = tuple[FakeAnthropic, FakeBedrock, FakeOpenAI]
HOUR = {"type": "ephemeral", "ttl": "1h"}


def _client(stack: Stack) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.edge_url, api_key=stack.token(), max_retries=0)


def _marks(body: dict[str, Any]) -> list[Any]:
    """Every cache_control the upstream received, in prefix order (tools, system, messages)."""
    blocks = list(body.get("tools") or [])
    system = body.get("system")
    blocks += system if isinstance(system, list) else []
    for message in body["messages"]:
        content = message["content"]
        blocks += content if isinstance(content, list) else []
    return [b["cache_control"] for b in blocks if "cache_control" in b]


def _document(n: int) -> dict[str, Any]:
    return {"type": "text", "text": f"Part {n}. " + LONG, "cache_control": EPHEMERAL}


def test_passthrough_fifth_breakpoint_is_dropped_and_named(stack: Stack, fakes: Fakes) -> None:
    claude = fakes[0]
    claude.reset()
    system: Any = [{"type": "text", "text": LONG, "cache_control": EPHEMERAL}]
    messages: Any = [
        {
            "role": "user",
            "content": [_document(n) for n in range(4)] + [{"type": "text", "text": "Q"}],
        }
    ]
    raw = _client(stack).messages.with_raw_response.create(
        model="claude", max_tokens=20, system=system, messages=messages
    )
    assert raw.status_code == 200  # Anthropic refuses five breakpoints with a 400
    assert raw.headers["x-interlock-cache-dropped"] == "system[0]=too_many"
    body = claude.received[-1].json
    assert "cache_control" not in body["system"][0]  # the first prefix gave way to the last four
    assert _marks(body) == [EPHEMERAL] * 4
    assert [b.get("cache_control") for b in body["messages"][0]["content"]][:4] == [EPHEMERAL] * 4


def test_passthrough_marks_under_the_minimum_are_named(stack: Stack, fakes: Fakes) -> None:
    claude = fakes[0]
    claude.reset()
    system: Any = [{"type": "text", "text": "Be brief.", "cache_control": EPHEMERAL}]
    tools: Any = [
        {
            "name": "lookup",
            "description": "Looks it up.",
            "input_schema": {"type": "object", "properties": {}},
            "cache_control": EPHEMERAL,
        }
    ]
    messages: Any = [{"role": "user", "content": [_document(0)]}]
    raw = _client(stack).messages.with_raw_response.create(
        model="claude", max_tokens=20, system=system, tools=tools, messages=messages
    )
    assert raw.headers["x-interlock-cache-dropped"] == (
        "tools[0]=below_minimum,system[0]=below_minimum"
    )
    body = claude.received[-1].json
    assert _marks(body) == [EPHEMERAL]  # the document's, over Sonnet's 1,024 tokens
    assert body["system"] == [{"type": "text", "text": "Be brief."}]
    # A stream is told the same before its first byte.
    with _client(stack).messages.with_streaming_response.create(
        model="claude", max_tokens=20, system=system, tools=tools, messages=messages, stream=True
    ) as streamed:
        assert (
            streamed.headers["x-interlock-cache-dropped"]
            == raw.headers["x-interlock-cache-dropped"]
        )
        assert "".join(streamed.iter_lines())


def test_passthrough_shortens_an_hour_after_five_minutes(stack: Stack, fakes: Fakes) -> None:
    claude = fakes[0]
    claude.reset()
    system: Any = [{"type": "text", "text": LONG, "cache_control": EPHEMERAL}]
    late = {"type": "text", "text": "More. " + LONG, "cache_control": HOUR}
    messages: Any = [{"role": "user", "content": [late, {"type": "text", "text": "Q"}]}]
    raw = _client(stack).messages.with_raw_response.create(
        model="claude", max_tokens=20, system=system, messages=messages
    )
    assert raw.status_code == 200  # Anthropic refuses a 1h entry after a 5m one
    assert raw.headers["x-interlock-cache-dropped"] == "messages[0].content[0]=ttl_shortened"
    assert _marks(claude.received[-1].json) == [EPHEMERAL, EPHEMERAL]


def test_passthrough_within_the_limits_sends_the_clients_request(
    stack: Stack, fakes: Fakes
) -> None:
    claude = fakes[0]
    claude.reset()
    payload: Any = {
        "model": "claude",
        "max_tokens": 20,
        "system": [{"type": "text", "text": LONG, "cache_control": HOUR}],
        "messages": [{"role": "user", "content": [_document(1), {"type": "text", "text": "Q"}]}],
    }
    raw = _client(stack).messages.with_raw_response.create(**payload)
    assert "x-interlock-cache-dropped" not in raw.headers
    sent = claude.received[-1]
    # Only the model is rewritten: the marks are the client's own, as they were sent.
    assert orjson.loads(sent.body) == {**payload, "model": "claude-sonnet-4-5"}
    assert _marks(sent.json) == [HOUR, EPHEMERAL]


def test_bedrock_hour_marks_only_where_the_model_takes_them(stack: Stack, fakes: Fakes) -> None:
    bedrock = fakes[1]
    bedrock.reset()
    sdk = openai.OpenAI(base_url=f"{stack.edge_url}/v1", api_key=stack.token(), max_retries=0)
    messages: Any = [
        {"role": "system", "content": [{"type": "text", "text": LONG, "cache_control": HOUR}]},
        {"role": "user", "content": "Q"},
    ]
    hour = sdk.chat.completions.with_raw_response.create(
        model="sonnet-bedrock", messages=messages, max_tokens=20
    )
    assert "x-interlock-cache-dropped" not in hour.headers
    assert bedrock.received[-1].json["system"] == [
        {"text": LONG},
        {"cachePoint": {"type": "default", "ttl": "1h"}},
    ]
    usage = hour.parse().usage
    assert usage is not None
    details = usage.model_dump()["prompt_tokens_details"]
    assert details["cache_creation_1h_tokens"] == details["cache_write_tokens"] > 1000
    # Sonnet 4 caches for five minutes only (Bedrock refuses its 1h cache point): the
    # entry is written for five minutes and the client is told its TTL went.
    other = "Another prompt. " + LONG  # not the prefix the first request wrote
    messages[0]["content"][0]["text"] = other
    five = sdk.chat.completions.with_raw_response.create(
        model="sonnet4-bedrock", messages=messages, max_tokens=20
    )
    assert five.headers["x-interlock-cache-dropped"] == "messages[0].content[0]=ttl_unsupported"
    assert bedrock.received[-1].json["system"] == [
        {"text": other},
        {"cachePoint": {"type": "default"}},
    ]
    usage = five.parse().usage
    assert usage is not None
    details = usage.model_dump()["prompt_tokens_details"]
    assert details["cache_write_tokens"] > 1000 and not details.get("cache_creation_1h_tokens")
