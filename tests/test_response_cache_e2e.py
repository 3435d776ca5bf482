"""The exact response cache (core.cache), end to end: the official SDKs -> edge -> core ->
fake providers over loopback, counting upstream calls.

Chat against an OpenAI-shaped fake, messages against a fake Anthropic (passthrough): miss then
hit, a stream answered from a complete entry and the reverse, Cache-Control, Age, tenant
isolation, the ledger's free `cache_hit`, and rate limits that count the request only.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_openai import TEXT, FakeOpenAI
from tests.support.prom import by_label, scrape, value
from tests.support.stack import Stack


def cache_overrides(fake: FakeOpenAI, claude: FakeAnthropic) -> dict[str, Any]:
    return {
        "providers": {
            "fake": {
                "kind": "openai",
                "base_url": fake.base_url,
                "api_key": "sk-test-upstream",
                "allow_any_model": True,
            },
            "claude": {
                "kind": "anthropic",
                "base_url": claude.url,
                "api_key": "sk-ant-upstream",
                "allow_any_model": True,
            },
        },
        "models": {
            "gpt-fake": {"provider": "fake", "model": "gpt-fake"},
            "gpt-uncached": {"provider": "fake", "model": "gpt-fake"},
            "gpt-slow": {"provider": "fake", "model": "slow-400"},
            "gpt-cut": {"provider": "fake", "model": "error-after-200"},
            "gpt-500": {"provider": "fake", "model": "fail-500"},
            "gpt-tools": {"provider": "fake", "model": "tool-calls"},
            "claude-fake": {"provider": "claude", "model": "claude-fake"},
        },
        "limits": {
            "tiers": {"default": {"rpm": 100_000, "tpm": 100_000_000}},
            "default_tier": "default",
            "tenants": {"limited": {"rpm": 3, "tpm": 100_000, "burst": 1}},
        },
        "cache": {
            "enabled": True,
            "ttl": "10m",
            "models": {"gpt-uncached": {"enabled": False}},
            "tenants": {"optout": {"enabled": False}},
        },
    }


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI, claude: FakeAnthropic
) -> Iterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("response-cache")
    running = Stack(workdir, cache_overrides(fake, claude)).start()
    yield running
    running.stop()


def oai(stack: Stack, tenant: str = "acme", **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{stack.edge_url}/v1",
        api_key=stack.token(tenant=tenant),
        max_retries=0,
        default_headers=headers or None,
    )


def ant(stack: Stack, tenant: str = "acme", **headers: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=stack.edge_url,
        api_key=stack.token(tenant=tenant),
        max_retries=0,
        default_headers=headers or None,
    )


def unique() -> list[Any]:
    """A prompt no other test sends: every test starts from an empty cache for it."""
    return [{"role": "user", "content": f"Say hello ({uuid.uuid4().hex})"}]


def calls(fake: FakeOpenAI | FakeAnthropic) -> int:
    return len(fake.received)


def chat(stack: Stack, messages: list[Any], tenant: str = "acme", **kw: Any) -> Any:
    headers = kw.pop("headers", {})
    return oai(stack, tenant, **headers).chat.completions.with_raw_response.create(
        model=kw.pop("model", "gpt-fake"), messages=messages, **kw
    )


def streamed_text(stack: Stack, messages: list[Any], **kw: Any) -> tuple[str, Any, Any]:
    """The streamed text, the headers and the last chunk (usage when asked)."""
    raw = oai(stack).chat.completions.with_raw_response.create(
        model="gpt-fake", messages=messages, stream=True, **kw
    )
    text, last = "", None
    for chunk in raw.parse():
        last = chunk
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
    return text, raw.headers, last


def test_chat_miss_then_hit(stack: Stack, fake: FakeOpenAI) -> None:
    messages = unique()
    before = calls(fake)
    first = chat(stack, messages)
    assert first.headers["x-interlock-cache"] == "miss"
    second = chat(stack, messages)
    assert calls(fake) == before + 1  # the hit made no upstream call
    assert second.headers["x-interlock-cache"] == "hit"
    assert int(second.headers["age"]) >= 0
    assert second.headers["x-interlock-cost"] == "0.000000"
    assert second.parse().model_dump() == first.parse().model_dump()
    assert second.parse().choices[0].message.content == TEXT
    # Another parameter is another entry; `user` and `metadata` are not part of the key.
    chat(stack, messages, temperature=0.3)
    assert calls(fake) == before + 2
    assert chat(stack, messages, user="u1").headers["x-interlock-cache"] == "hit"


def test_stream_answered_from_a_complete_entry(stack: Stack, fake: FakeOpenAI) -> None:
    messages = unique()
    chat(stack, messages)
    before = calls(fake)
    text, headers, last = streamed_text(stack, messages, stream_options={"include_usage": True})
    assert calls(fake) == before
    assert headers["x-interlock-cache"] == "hit"
    assert text == TEXT
    assert last.usage is not None and last.usage.total_tokens == 19
    text, _, last = streamed_text(stack, messages)  # no usage chunk unless asked
    assert text == TEXT and last.usage is None and last.choices[0].finish_reason == "stop"


def test_complete_answered_from_a_stream(stack: Stack, fake: FakeOpenAI) -> None:
    messages = unique()
    text, headers, _ = streamed_text(stack, messages)
    assert headers["x-interlock-cache"] == "miss" and text == TEXT
    before = calls(fake)
    hit = chat(stack, messages)
    assert calls(fake) == before
    assert hit.headers["x-interlock-cache"] == "hit"
    completion = hit.parse()
    assert completion.choices[0].message.content == TEXT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens == 19
    assert "interlock_cost" not in (completion.usage.model_extra or {})


def test_cache_control(stack: Stack, fake: FakeOpenAI) -> None:
    messages = unique()
    before = calls(fake)
    bypass = chat(stack, messages, headers={"Cache-Control": "no-store"})
    assert bypass.headers["x-interlock-cache"] == "bypass"
    assert chat(stack, messages).headers["x-interlock-cache"] == "miss"  # no-store kept nothing
    refreshed = chat(stack, messages, headers={"Cache-Control": "no-cache"})
    assert refreshed.headers["x-interlock-cache"] == "miss"
    assert calls(fake) == before + 3
    time.sleep(1.1)
    young = chat(stack, messages, headers={"Cache-Control": "max-age=0"})
    assert young.headers["x-interlock-cache"] == "miss"  # the entry is older than 0 s
    fresh = chat(stack, messages, headers={"Cache-Control": "max-age=60"})
    assert fresh.headers["x-interlock-cache"] == "hit"
    with pytest.raises(openai.BadRequestError) as caught:
        chat(stack, messages, headers={"Cache-Control": "max-age=soon"})
    assert caught.value.body["param"] == "Cache-Control"  # type: ignore[index]


def test_disabled_per_model_and_tenant(stack: Stack, fake: FakeOpenAI) -> None:
    messages = unique()
    before = calls(fake)
    for _ in range(2):
        assert chat(stack, messages, model="gpt-uncached").headers["x-interlock-cache"] == "bypass"
        assert chat(stack, messages, "optout").headers["x-interlock-cache"] == "bypass"
    assert calls(fake) == before + 4


def test_tenant_isolation(stack: Stack, fake: FakeOpenAI) -> None:
    messages = unique()
    chat(stack, messages, "tenant-a")
    assert chat(stack, messages, "tenant-a").headers["x-interlock-cache"] == "hit"
    before = calls(fake)
    other = chat(stack, messages, "tenant-b")
    assert other.headers["x-interlock-cache"] == "miss"
    assert calls(fake) == before + 1


def texts(message: Any) -> list[str]:
    return [block.text for block in message.content if block.type == "text"]


def test_messages_passthrough_both_ways(stack: Stack, claude: FakeAnthropic) -> None:
    prompt = unique()
    before = calls(claude)
    first = ant(stack).messages.with_raw_response.create(
        model="claude-fake", max_tokens=64, messages=prompt
    )
    assert first.headers["x-interlock-cache"] == "miss"
    message = first.parse()
    with ant(stack).messages.stream(model="claude-fake", max_tokens=64, messages=prompt) as s:
        replayed = s.get_final_message()
        assert s.response.headers["x-interlock-cache"] == "hit"
    assert calls(claude) == before + 1
    assert texts(replayed) == texts(message) and texts(message)
    assert replayed.usage.output_tokens == message.usage.output_tokens
    # The reverse: a streamed miss answers a complete request.
    prompt = unique()
    with ant(stack).messages.stream(model="claude-fake", max_tokens=64, messages=prompt) as s:
        streamed = s.get_final_message()
    hit = ant(stack).messages.with_raw_response.create(
        model="claude-fake", max_tokens=64, messages=prompt
    )
    assert hit.headers["x-interlock-cache"] == "hit"
    assert calls(claude) == before + 2
    assert texts(hit.parse()) == texts(streamed) and texts(streamed)
    assert hit.parse().stop_reason == streamed.stop_reason


def test_ledger_records_a_free_hit(stack: Stack) -> None:
    messages = unique()
    chat(stack, messages, "ledgered")
    hit = chat(stack, messages, "ledgered")
    rid = hit.headers["x-request-id"]
    path = stack.workdir / "state" / "ledger.sqlite3"
    row = None
    deadline = time.monotonic() + 10
    while row is None and time.monotonic() < deadline:
        if path.exists():
            db = sqlite3.connect(path)
            db.row_factory = sqlite3.Row
            try:
                found = db.execute(
                    "SELECT * FROM ledger_records WHERE request_id = ?", (rid,)
                ).fetchall()
            except sqlite3.OperationalError:
                found = []
            db.close()
            row = found[0] if found else None
        time.sleep(0.05)
    assert row is not None
    assert row["outcome"] == "cache_hit"
    assert row["cost_micros"] == 0
    assert row["input"] == 0 and row["output"] == 0
    usage = hit.parse().usage
    assert (row["saved_input"], row["saved_output"]) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )
    assert row["saved_input"] + row["saved_output"] == 19
    assert row["tenant"] == "ledgered"


def test_a_hit_takes_a_request_not_tokens(stack: Stack) -> None:
    messages = unique()
    miss = chat(stack, messages, "limited")
    hit = chat(stack, messages, "limited")
    assert hit.headers["x-interlock-cache"] == "hit"
    assert int(hit.headers["x-ratelimit-remaining-requests"]) == 1
    tokens_after_miss = int(miss.headers["x-ratelimit-remaining-tokens"])
    assert int(hit.headers["x-ratelimit-remaining-tokens"]) >= tokens_after_miss
    chat(stack, messages, "limited")
    with pytest.raises(openai.RateLimitError):
        chat(stack, messages, "limited")  # the fourth request in the minute, hit or not


def test_messages_translated_both_ways(stack: Stack, fake: FakeOpenAI) -> None:
    """Messages served by an OpenAI-shaped target (translated, not passthrough)."""
    prompt = unique()
    before = calls(fake)
    with ant(stack).messages.stream(model="gpt-fake", max_tokens=64, messages=prompt) as s:
        streamed = s.get_final_message()
        assert s.response.headers["x-interlock-cache"] == "miss"
    hit = ant(stack).messages.with_raw_response.create(
        model="gpt-fake", max_tokens=64, messages=prompt
    )
    assert hit.headers["x-interlock-cache"] == "hit"
    assert texts(hit.parse()) == texts(streamed) == [TEXT]
    with ant(stack).messages.stream(model="gpt-fake", max_tokens=64, messages=prompt) as s:
        again = s.get_final_message()
        assert s.response.headers["x-interlock-cache"] == "hit"
    assert texts(again) == [TEXT]
    assert again.usage.output_tokens == streamed.usage.output_tokens
    assert calls(fake) == before + 1
    # The same prompt through chat is another entry (another API's answer).
    assert chat(stack, prompt).headers["x-interlock-cache"] == "miss"


def test_only_complete_successful_answers_are_stored(stack: Stack, fake: FakeOpenAI) -> None:
    messages = unique()
    for _ in range(2):  # a stream that ends in an error is replayed never
        stream = oai(stack).chat.completions.create(model="gpt-cut", messages=messages, stream=True)
        with pytest.raises(openai.APIError):
            for _chunk in stream:
                pass
    assert sum(1 for r in fake.received if r.json and r.json["model"] == "error-after-200") == 2


def test_tool_calls_are_cached_and_replayed_as_a_stream(stack: Stack, fake: FakeOpenAI) -> None:
    messages = unique()
    first = chat(stack, messages, model="gpt-tools", stream=False)
    calls_first = first.parse().choices[0].message.tool_calls
    assert calls_first
    before = calls(fake)
    stream = oai(stack).chat.completions.create(model="gpt-tools", messages=messages, stream=True)
    arguments: dict[int, str] = {}
    for chunk in stream:
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            part = call.function.arguments if call.function else None
            arguments[call.index] = arguments.get(call.index, "") + (part or "")
    assert calls(fake) == before
    assert [arguments[k] for k in sorted(arguments)] == [c.function.arguments for c in calls_first]


def test_metrics_count_the_outcomes(stack: Stack) -> None:
    messages = unique()
    chat(stack, messages)
    chat(stack, messages)
    found = scrape(stack.core_admin_url)
    counts = by_label(found, "interlock_response_cache_total", "outcome")
    assert counts["hit"] >= 1 and counts["miss"] >= 1 and "bypass" in counts
    assert (value(found, "interlock_response_cache_bytes") or 0) > 0
