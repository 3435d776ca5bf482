"""The response cache and request coalescing for /v1/responses, end to end: the official
openai SDK's `responses.create` and `responses.stream` -> edge -> core -> a fake OpenAI over
loopback (a chat host the request is translated for, and OpenAI's own Responses API for
passthrough), upstream calls counted at the fake.

Miss then hit, complete and streamed both ways; every hit is a response of its own (new
response and item ids, its own metadata and store flag, stored so GET and input_items find
it), a streamed hit is a well-formed, numbered Responses event stream; previous_response_id
keys on the history it resolves to; tenants never share entries; a hit is a free
`cache_hit` in the ledger; N identical concurrent requests make one upstream call, each
answer its own response.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.support.fake_openai import TEXT, FakeOpenAI
from tests.support.stack import Cluster, Stack

N = 5


def overrides(fake: FakeOpenAI) -> dict[str, Any]:
    compat = {"kind": "openai", "base_url": fake.base_url, "api_key": "sk-up"}
    return {
        "providers": {
            "fake": {**compat, "allow_any_model": True},
            "native": {**compat, "options": {"preset": "openai"}, "allow_any_model": True},
        },
        "models": {
            "gpt-fake": {"provider": "fake", "model": "gpt-fake"},
            "gpt-slow": {"provider": "fake", "model": "slow-400"},
            "gpt-native": {"provider": "native", "model": "gpt-5"},
        },
        "limits": {"tiers": {"default": {"rpm": 100_000, "tpm": 100_000_000}}},
        "cache": {"enabled": True, "ttl": "10m"},
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("responses-cache"), overrides(fake)).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI, redis_url: str
) -> Iterator[Cluster]:
    settings = {**overrides(fake), "state": {"redis_url": redis_url}}
    running = Cluster(tmp_path_factory.mktemp("responses-cache-2"), settings, cores=2, edges=1)
    running.start()
    yield running
    running.stop()


def sdk(stack: Stack, tenant: str = "acme", **headers: str) -> openai.OpenAI:
    token = stack.token(tenant=tenant)
    return openai.OpenAI(
        base_url=f"{stack.edge_url}/v1", api_key=token, max_retries=0, default_headers=headers
    )


def asdk(stack: Stack, url: str) -> openai.AsyncOpenAI:
    token = stack.token(tenant="acme")
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0)


def unique() -> str:
    return f"Say hello ({uuid.uuid4().hex})"


def upstream(fake: FakeOpenAI, model: str) -> int:
    return sum(1 for r in fake.received if r.json and r.json.get("model") == model)


def create(stack: Stack, tenant: str = "acme", **kw: Any) -> tuple[Any, Any]:
    """The response and its headers."""
    headers = kw.pop("headers", {})
    raw = sdk(stack, tenant, **headers).responses.with_raw_response.create(
        model=kw.pop("model", "gpt-fake"), **kw
    )
    return raw.parse(), raw.headers


def stream_events(stack: Stack, **kw: Any) -> tuple[Any, list[Any], Any]:
    """One streamed request: the final response (the SDK's helper, which checks the event
    order), its events, its headers."""
    client = sdk(stack)
    raw = client.responses.with_raw_response.create(
        model=kw.pop("model", "gpt-fake"), stream=True, **kw
    )
    events = list(raw.parse())
    final = next(e.response for e in events if e.type in ("response.completed",))
    return final, events, raw.headers


def well_formed(events: list[Any]) -> None:
    """Numbered from 0 without gaps; one response id; item events name the final items."""
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    ids = {e.response.id for e in events if hasattr(e, "response")}
    assert len(ids) == 1
    final_items = {item.id for item in events[-1].response.output}
    named = {e.item_id for e in events if hasattr(e, "item_id")}
    named |= {e.item.id for e in events if hasattr(e, "item")}
    assert named == final_items


def test_miss_then_hit_is_a_response_of_its_own(stack: Stack, fake: FakeOpenAI) -> None:
    prompt, before = unique(), upstream(fake, "gpt-fake")
    first, miss = create(stack, input=prompt, metadata={"turn": "a"})
    second, hit = create(stack, input=prompt, metadata={"turn": "b"})
    assert upstream(fake, "gpt-fake") == before + 1  # the hit made no upstream call
    assert (miss["x-interlock-cache"], hit["x-interlock-cache"]) == ("miss", "hit")
    assert hit["x-interlock-cost"] == "0.000000" and int(hit["age"]) >= 0
    assert second.output_text == first.output_text == TEXT
    assert second.id != first.id and second.id.startswith("resp_")
    assert second.output[0].id != first.output[0].id
    assert second.metadata == {"turn": "b"} and second.usage == first.usage
    client = sdk(stack)
    assert client.responses.retrieve(second.id).output_text == TEXT  # stored under its own id
    listed = client.responses.input_items.list(second.id).data
    assert [part.text for part in listed[0].content] == [prompt]
    follow = client.responses.create(model="gpt-fake", input="and?", previous_response_id=second.id)
    assert follow.previous_response_id == second.id
    # Another parameter is another entry; store, metadata and user are not part of the key.
    create(stack, input=prompt, temperature=0.3)
    assert upstream(fake, "gpt-fake") == before + 3  # `and?`, then the temperature
    unstored, headers = create(stack, input=prompt, store=False, user="u1")
    assert headers["x-interlock-cache"] == "hit" and unstored.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)


def test_a_streamed_hit_is_a_well_formed_event_stream(stack: Stack, fake: FakeOpenAI) -> None:
    prompt = unique()
    first, _ = create(stack, input=prompt)
    before = upstream(fake, "gpt-fake")
    final, events, headers = stream_events(stack, input=prompt)
    assert upstream(fake, "gpt-fake") == before and headers["x-interlock-cache"] == "hit"
    well_formed(events)
    assert final.output_text == TEXT and final.id != first.id
    assert "interlock_cost" not in (final.usage.model_extra or {})
    with sdk(stack).responses.stream(model="gpt-fake", input=prompt) as stream:
        helper = stream.get_final_response()  # the SDK's helper takes the replay
    assert helper.output_text == TEXT and helper.id not in (final.id, first.id)
    assert sdk(stack).responses.retrieve(final.id).output_text == TEXT


def test_a_stream_fills_the_cache_for_both_modes(stack: Stack, fake: FakeOpenAI) -> None:
    prompt, before = unique(), upstream(fake, "gpt-fake")
    live, events, headers = stream_events(stack, input=prompt)
    assert headers["x-interlock-cache"] == "miss"
    well_formed(events)
    complete, hit = create(stack, input=prompt)
    assert hit["x-interlock-cache"] == "hit" and complete.output_text == TEXT
    assert complete.usage.total_tokens == live.usage.total_tokens
    assert "interlock_cost" not in (complete.usage.model_extra or {})
    again, events, headers = stream_events(stack, input=prompt)
    assert headers["x-interlock-cache"] == "hit" and again.output_text == TEXT
    well_formed(events)
    assert upstream(fake, "gpt-fake") == before + 1


def test_tool_calls_replay(stack: Stack, fake: FakeOpenAI) -> None:
    tools = [{"type": "function", "name": "w", "parameters": {"type": "object"}}]
    prompt = unique()
    first, _ = create(stack, model="gpt-fake", input=prompt, tools=tools)
    _, events, headers = stream_events(stack, input=prompt, tools=tools)
    assert headers["x-interlock-cache"] == "hit"
    well_formed(events)
    assert [i.type for i in events[-1].response.output] == [i.type for i in first.output]


def test_passthrough_answers_are_cached(stack: Stack, fake: FakeOpenAI) -> None:
    prompt, before = unique(), upstream(fake, "gpt-5")
    first, miss = create(stack, model="gpt-native", input=prompt)
    second, hit = create(stack, model="gpt-native", input=prompt)
    assert (miss["x-interlock-cache"], hit["x-interlock-cache"]) == ("miss", "hit")
    assert second.output_text == first.output_text and second.id != first.id
    final, events, headers = stream_events(stack, model="gpt-native", input=prompt)
    assert headers["x-interlock-cache"] == "hit" and final.output_text == first.output_text
    well_formed(events)
    assert upstream(fake, "gpt-5") == before + 1
    # A built-in tool changes a passthrough answer: another entry.
    create(stack, model="gpt-native", input=prompt, tools=[{"type": "web_search"}])
    assert upstream(fake, "gpt-5") == before + 2
    # A streamed passthrough miss fills the cache too.
    other = unique()
    stream_events(stack, model="gpt-native", input=other)
    assert create(stack, model="gpt-native", input=other)[1]["x-interlock-cache"] == "hit"
    assert upstream(fake, "gpt-5") == before + 3


def test_previous_response_id_keys_on_the_history(stack: Stack, fake: FakeOpenAI) -> None:
    ada, _ = create(stack, input=f"My name is Ada ({uuid.uuid4().hex}).")
    bob, _ = create(stack, input=f"My name is Bob ({uuid.uuid4().hex}).")
    before = upstream(fake, "gpt-fake")
    _, first = create(stack, input="What is my name?", previous_response_id=ada.id)
    again, second = create(stack, input="What is my name?", previous_response_id=ada.id)
    _, other = create(stack, input="What is my name?", previous_response_id=bob.id)
    states = [h["x-interlock-cache"] for h in (first, second, other)]
    assert states == ["miss", "hit", "miss"]
    assert upstream(fake, "gpt-fake") == before + 2
    assert again.previous_response_id == ada.id
    items = sdk(stack).responses.input_items.list(again.id, order="asc").data
    assert [item.role for item in items] == ["user", "assistant", "user"]


def test_tenants_never_share_entries(stack: Stack, fake: FakeOpenAI) -> None:
    prompt, before = unique(), upstream(fake, "gpt-fake")
    mine, _ = create(stack, "tenant-a", input=prompt)
    theirs, headers = create(stack, "tenant-b", input=prompt)
    assert headers["x-interlock-cache"] == "miss" and upstream(fake, "gpt-fake") == before + 2
    assert theirs.id != mine.id
    with pytest.raises(openai.NotFoundError):
        sdk(stack, "tenant-b").responses.retrieve(mine.id)
    _, headers = create(stack, "tenant-a", input=prompt)
    assert headers["x-interlock-cache"] == "hit"


def test_cache_control_no_store_bypasses(stack: Stack, fake: FakeOpenAI) -> None:
    prompt, before = unique(), upstream(fake, "gpt-fake")
    _, headers = create(stack, input=prompt, headers={"Cache-Control": "no-store"})
    assert headers["x-interlock-cache"] == "bypass"
    _, headers = create(stack, input=prompt)
    assert headers["x-interlock-cache"] == "miss" and upstream(fake, "gpt-fake") == before + 2


def ledger_row(stack: Stack, request_id: str) -> Any:
    path, deadline = stack.workdir / "state" / "ledger.sqlite3", time.monotonic() + 10
    while time.monotonic() < deadline:
        if path.exists():
            db = sqlite3.connect(path)
            db.row_factory = sqlite3.Row
            try:
                found = db.execute(
                    "SELECT * FROM ledger_records WHERE request_id = ?", (request_id,)
                ).fetchall()
            except sqlite3.OperationalError:
                found = []
            db.close()
            if found:
                return found[0]
        time.sleep(0.05)
    raise AssertionError("no ledger record")


def test_a_hit_is_a_free_ledger_record(stack: Stack) -> None:
    prompt = unique()
    create(stack, "ledgered", input=prompt)
    answer, headers = create(stack, "ledgered", input=prompt)
    row = ledger_row(stack, headers["x-request-id"])
    assert row["outcome"] == "cache_hit" and row["cost_micros"] == 0
    assert row["input"] == 0 and row["output"] == 0
    saved = (row["saved_input"], row["saved_output"])
    assert saved == (answer.usage.input_tokens, answer.usage.output_tokens)


async def _concurrent(
    stack: Stack, urls: list[str], prompt: str, stream: bool
) -> list[tuple[Any, Any]]:
    async def one(url: str) -> tuple[Any, Any]:
        client = asdk(stack, url)
        if not stream:
            raw = await client.responses.with_raw_response.create(model="gpt-slow", input=prompt)
            return raw.parse(), raw.headers
        raw = await client.responses.with_raw_response.create(
            model="gpt-slow", input=prompt, stream=True
        )
        events = [event async for event in raw.parse()]
        well_formed(events)
        return events[-1].response, raw.headers

    return list(await asyncio.gather(*(one(urls[k % len(urls)]) for k in range(N))))


@pytest.mark.parametrize("stream", [False, True])
def test_concurrent_identical_requests_make_one_call(
    stack: Stack, fake: FakeOpenAI, stream: bool
) -> None:
    one_call(stack, [stack.edge_url], fake, stream)


@pytest.mark.parametrize("stream", [False, True])
def test_two_cores_sharing_redis_make_one_call(
    cluster: Cluster, fake: FakeOpenAI, stream: bool
) -> None:
    """One edge balances round-robin: the requests land on both cores; every answer is
    stored in Redis under its own id, so any core finds it."""
    one_call(cluster, cluster.edge_urls, fake, stream)


def one_call(stack: Stack, urls: list[str], fake: FakeOpenAI, stream: bool) -> None:
    """N identical concurrent requests: one upstream call, N responses of their own."""
    prompt, before = unique(), upstream(fake, "slow-400")
    results = asyncio.run(_concurrent(stack, urls, prompt, stream))
    assert upstream(fake, "slow-400") == before + 1
    states = sorted(headers["x-interlock-cache"] for _, headers in results)
    assert states == ["coalesced"] * (N - 1) + ["miss"]
    responses = [response for response, _ in results]
    assert all(r.output_text == TEXT for r in responses)
    assert len({r.id for r in responses}) == N  # each its own response
    assert len({r.output[0].id for r in responses}) == N
    client = sdk(stack)
    for response in responses:
        assert client.responses.retrieve(response.id).output_text == TEXT
        assert client.responses.input_items.list(response.id).data[0].content[0].text == prompt
