"""Request coalescing (core.cache.coalesce), end to end: the official openai SDK -> edge ->
core -> fakes over loopback, upstream calls counted by the fakes.

N identical concurrent requests make one upstream call and get N correct answers, complete
and streamed, on one core and across two cores sharing a private Redis; a follower that joins
mid-stream (a slow streaming fake) gets the whole stream; another tenant never joins; n > 1,
Cache-Control no-store and a tenant with coalescing off are not coalesced; a follower's ledger
record is a free `coalesced` with the tokens it saved.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_faults import FakeFaults
from tests.support.fake_openai import TEXT, FakeOpenAI
from tests.support.fault_stack import faults_provider
from tests.support.ledger_load import sqlite_rows
from tests.support.prom import by_label, scrape, value
from tests.support.redis_cluster import SharedState
from tests.support.stack import Cluster, Stack
from tests.test_response_cache_e2e import cache_overrides

N = 5
TRICKLE = "fault/trickle/0.15"  # ten chunks 0.15 s apart: 1.5 s of stream
STALL = "gpt-stall-mid"  # a stream's first chunks, then silence until its client leaves
WHOLE = "Hello.......... world"  # the trickle's text


def overrides(fake: FakeOpenAI, claude: FakeAnthropic, faults: FakeFaults) -> dict[str, Any]:
    base = cache_overrides(fake, claude)
    base["providers"]["faults"] = faults_provider(faults, allow_any_model=True)
    base["models"]["gpt-trickle"] = {"provider": "faults", "model": TRICKLE}
    base["models"][STALL] = {"provider": "faults", "model": "fault/stall-mid/30"}
    base["models"]["claude-slow"] = {"provider": "claude", "model": "slow-first-byte"}
    base["cache"]["tenants"]["solo"] = {"coalesce": False}
    return base


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    fake: FakeOpenAI,
    claude: FakeAnthropic,
    faults: FakeFaults,
) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("coalesce"), overrides(fake, claude, faults)).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    fake: FakeOpenAI,
    claude: FakeAnthropic,
    faults: FakeFaults,
    shared_state: SharedState,
) -> Iterator[Cluster]:
    settings = {**overrides(fake, claude, faults), "state": shared_state.state}
    running = Cluster(tmp_path_factory.mktemp("coalesce-2"), settings, cores=2, edges=1)
    running.start()
    yield running
    running.stop()


def unique() -> list[Any]:
    return [{"role": "user", "content": f"Say hello ({uuid.uuid4().hex})"}]


def upstream(fake: FakeOpenAI | FakeFaults, model: str) -> int:
    return sum(1 for r in fake.received if r.json and r.json.get("model") == model)


def client(url: str, token: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0)


async def complete(url: str, token: str, messages: list[Any], **kw: Any) -> Any:
    return await client(url, token).chat.completions.with_raw_response.create(
        model=kw.pop("model", "gpt-slow"), messages=messages, **kw
    )


async def streamed(url: str, token: str, messages: list[Any], **kw: Any) -> tuple[str, Any, Any]:
    """The streamed text, the response headers and the last chunk."""
    raw = await client(url, token).chat.completions.with_raw_response.create(
        model=kw.pop("model", "gpt-slow"), messages=messages, stream=True, **kw
    )
    text, last = "", None
    async for chunk in raw.parse():
        last = chunk
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
    return text, raw.headers, last


async def gather(*calls: Any) -> list[Any]:
    return list(await asyncio.gather(*calls))


def test_concurrent_complete_requests_share_one_call(stack: Stack, fake: FakeOpenAI) -> None:
    before, messages, token = upstream(fake, "slow-400"), unique(), stack.token(tenant="acme")
    results = asyncio.run(gather(*(complete(stack.edge_url, token, messages) for _ in range(N))))
    assert upstream(fake, "slow-400") == before + 1
    assert [r.parse().choices[0].message.content for r in results] == [TEXT] * N
    states = sorted(r.headers["x-interlock-cache"] for r in results)
    assert states == ["coalesced"] * (N - 1) + ["miss"]
    followers = [r for r in results if r.headers["x-interlock-cache"] == "coalesced"]
    assert all(r.headers["x-interlock-cost"] == "0.000000" for r in followers)
    assert all(r.headers["x-interlock-provider"] == "fake" for r in followers)
    assert len({r.headers["x-request-id"] for r in results}) == N


def test_concurrent_streams_share_one_call(stack: Stack, fake: FakeOpenAI) -> None:
    before, messages, token = upstream(fake, "slow-400"), unique(), stack.token(tenant="acme")
    opts = {"stream_options": {"include_usage": True}}
    results = asyncio.run(
        gather(*(streamed(stack.edge_url, token, messages, **opts) for _ in range(N)))
    )
    assert upstream(fake, "slow-400") == before + 1
    assert [text for text, _, _ in results] == [TEXT] * N
    assert all(last.usage is not None and last.usage.total_tokens > 0 for _, _, last in results)
    states = sorted(headers["x-interlock-cache"] for _, headers, _ in results)
    assert states == ["coalesced"] * (N - 1) + ["miss"]
    prices = {
        headers["x-interlock-cache"]: (last.usage.model_extra or {}).get("interlock_cost")
        for _, headers, last in results
    }
    assert prices["miss"] not in (None, "0.000000")  # the leader's stream shows its price
    assert prices["coalesced"] == "0.000000"  # a follower's, what it cost: nothing


def join_mid_stream(urls: list[str], token: str, faults: FakeFaults) -> None:
    """A leader's stream through urls[0]; once four chunks are in, a follower through urls[-1]
    gets the whole stream (what it missed, then the rest live) from the one upstream call."""
    before, messages = upstream(faults, TRICKLE), unique()

    async def scenario() -> tuple[str, str, Any, int]:
        raw = await client(urls[0], token).chat.completions.with_raw_response.create(
            model="gpt-trickle", messages=messages, stream=True
        )
        leader, seen, follower = "", 0, None
        async for chunk in raw.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                leader += chunk.choices[0].delta.content
                seen += 1
                if seen == 4:  # well into the stream: the follower missed four chunks
                    follower = asyncio.ensure_future(
                        streamed(urls[-1], token, messages, model="gpt-trickle")
                    )
        assert follower is not None
        text, headers, _ = await follower
        return leader, text, headers, seen

    leader, text, headers, seen = asyncio.run(scenario())
    assert seen > 4 and leader.count(".") == 10
    assert text == leader
    assert headers["x-interlock-cache"] == "coalesced"
    assert upstream(faults, TRICKLE) == before + 1


def test_a_follower_joining_mid_stream_gets_the_whole_stream(
    stack: Stack, faults: FakeFaults
) -> None:
    join_mid_stream([stack.edge_url], stack.token(tenant="acme"), faults)


def test_another_tenant_never_joins(stack: Stack, fake: FakeOpenAI) -> None:
    before, messages = upstream(fake, "slow-400"), unique()
    tokens = [stack.token(tenant="tenant-a"), stack.token(tenant="tenant-b")] * 2
    results = asyncio.run(gather(*(complete(stack.edge_url, t, messages) for t in tokens)))
    assert upstream(fake, "slow-400") == before + 2
    for tenant in (0, 1):
        states = sorted(r.headers["x-interlock-cache"] for r in results[tenant::2])
        assert states == ["coalesced", "miss"]


@pytest.mark.parametrize(
    ("tenant", "kw"),
    [
        ("acme", {"n": 2}),
        ("acme", {"extra_headers": {"Cache-Control": "no-store"}}),
        ("acme", {"extra_headers": {"Cache-Control": "no-cache"}}),
        ("solo", {}),
    ],
    ids=["n=2", "no-store", "no-cache", "coalesce-off"],
)
def test_not_coalesced(stack: Stack, fake: FakeOpenAI, tenant: str, kw: dict[str, Any]) -> None:
    before, messages, token = upstream(fake, "slow-400"), unique(), stack.token(tenant=tenant)
    calls = (complete(stack.edge_url, token, messages, **kw) for _ in range(3))
    results = asyncio.run(gather(*calls))
    assert upstream(fake, "slow-400") == before + 3
    assert all(r.headers["x-interlock-cache"] != "coalesced" for r in results)


def test_a_follower_is_recorded_free_with_what_it_saved(stack: Stack) -> None:
    messages, token = unique(), stack.token(tenant="coalesce-ledger")
    results = asyncio.run(gather(*(complete(stack.edge_url, token, messages) for _ in range(2))))
    follower = next(r for r in results if r.headers["x-interlock-cache"] == "coalesced")
    leader = next(r for r in results if r is not follower)
    path = stack.workdir / "state" / "ledger.sqlite3"
    rows: dict[str, Any] = {}
    for _ in range(100):
        rows = {row["request_id"]: row for row in sqlite_rows(path, 1)}
        if follower.headers["x-request-id"] in rows and leader.headers["x-request-id"] in rows:
            break
        asyncio.run(asyncio.sleep(0.1))
    row, billed = rows[follower.headers["x-request-id"]], rows[leader.headers["x-request-id"]]
    assert row["outcome"] == "coalesced" and row["cost_micros"] == 0
    assert (row["input"], row["output"]) == (0, 0)
    usage = follower.parse().usage
    assert (row["saved_input"], row["saved_output"]) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )
    assert billed["outcome"] == "ok" and billed["input"] == usage.prompt_tokens


def test_two_cores_sharing_redis_make_one_call(cluster: Cluster, fake: FakeOpenAI) -> None:
    """One edge balances round-robin: the requests land on both cores."""
    token = cluster.token(tenant="acme")
    urls = cluster.edge_urls
    messages, before = unique(), upstream(fake, "slow-400")
    calls = (complete(urls[k % len(urls)], token, messages) for k in range(N))
    results = asyncio.run(gather(*calls))
    assert upstream(fake, "slow-400") == before + 1
    assert [r.parse().choices[0].message.content for r in results] == [TEXT] * N
    messages, before = unique(), upstream(fake, "slow-400")
    streams = (streamed(urls[k % len(urls)], token, messages) for k in range(N))
    texts = asyncio.run(gather(*streams))
    assert upstream(fake, "slow-400") == before + 1
    assert [text for text, _, _ in texts] == [TEXT] * N
    states = sorted(headers["x-interlock-cache"] for _, headers, _ in texts)
    assert states == ["coalesced"] * (N - 1) + ["miss"]


def test_a_failed_leaders_followers_run_on_their_own(stack: Stack, fake: FakeOpenAI) -> None:
    """A leader's error may be its own (its limits, its budget, its client leaving), so its
    followers are not handed it: each runs (one leading the rest again) and gets its own."""
    token = stack.token(tenant="acme")
    before = upstream(fake, "fail-500")
    with pytest.raises(openai.APIStatusError) as solo:
        asyncio.run(complete(stack.edge_url, token, unique(), model="gpt-500"))
    per_request = upstream(fake, "fail-500") - before
    messages, before = unique(), upstream(fake, "fail-500")

    async def three() -> list[Any]:
        calls = (complete(stack.edge_url, token, messages, model="gpt-500") for _ in range(3))
        return list(await asyncio.gather(*calls, return_exceptions=True))

    results = asyncio.run(asyncio.wait_for(three(), 30))
    assert all(isinstance(r, openai.APIStatusError) for r in results)
    assert {r.status_code for r in results} == {solo.value.status_code}
    assert upstream(fake, "fail-500") == before + 3 * per_request


def test_messages_complete_and_streamed_share_one_call(stack: Stack, claude: FakeAnthropic) -> None:
    """The Anthropic API (official anthropic SDK) coalesces the same way, in its own format."""
    token = stack.token(tenant="acme")

    def sdk() -> anthropic.AsyncAnthropic:  # one per call: a client is bound to its loop
        return anthropic.AsyncAnthropic(base_url=stack.edge_url, api_key=token, max_retries=0)

    def upstream_calls() -> int:
        return sum(
            1 for r in claude.received if r.json and r.json.get("model") == "slow-first-byte"
        )

    async def one(messages: list[Any]) -> tuple[str, str]:
        raw = await sdk().messages.with_raw_response.create(
            model="claude-slow", max_tokens=64, messages=messages
        )
        message = await raw.parse()
        block = message.content[0]
        return (block.text if block.type == "text" else ""), raw.headers["x-interlock-cache"]

    async def streamed_text(messages: list[Any]) -> tuple[str, str]:
        text = ""
        async with sdk().messages.stream(
            model="claude-slow", max_tokens=64, messages=messages
        ) as stream:
            async for piece in stream.text_stream:
                text += piece
            final = await stream.get_final_message()
        return text, final.stop_reason or ""

    before, messages = upstream_calls(), unique()
    results = asyncio.run(gather(*(one(messages) for _ in range(3))))
    assert upstream_calls() == before + 1
    texts = {text for text, _ in results}
    assert len(texts) == 1 and texts != {""}
    assert sorted(state for _, state in results) == ["coalesced"] * 2 + ["miss"]
    before, messages = upstream_calls(), unique()
    streams = asyncio.run(gather(*(streamed_text(messages) for _ in range(3))))
    assert upstream_calls() == before + 1
    assert len(set(streams)) == 1 and streams[0][0] and streams[0][1] == "end_turn"


def test_metrics_count_coalesced_requests(stack: Stack) -> None:
    messages, token = unique(), stack.token(tenant="acme")
    asyncio.run(gather(*(complete(stack.edge_url, token, messages) for _ in range(2))))
    found = scrape(stack.core_admin_url)
    assert by_label(found, "interlock_response_cache_total", "outcome")["coalesced"] >= 1
    assert value(found, "interlock_coalescing_flights") == 0  # every flight forgotten once ended


def test_two_cores_a_follower_joining_mid_stream(cluster: Cluster, faults: FakeFaults) -> None:
    """The edge balances round-robin, so the follower lands on the other core: it reads the
    leader's chunks from Redis, from the first."""
    before = [outcomes(port) for port in cluster.core_admin_ports]
    join_mid_stream(cluster.edge_urls, cluster.token(tenant="acme"), faults)
    after = [outcomes(port) for port in cluster.core_admin_ports]
    led = [k for k in (0, 1) if after[k]["miss"] > before[k]["miss"]]
    followed = [k for k in (0, 1) if after[k]["coalesced"] > before[k]["coalesced"]]
    assert len(led) == 1 and len(followed) == 1 and led != followed  # across the cores


def outcomes(admin_port: int) -> dict[str, int]:
    """A core's response cache outcomes, from its /metrics."""
    found = scrape(f"http://127.0.0.1:{admin_port}")
    return by_label(found, "interlock_response_cache_total", "outcome")
