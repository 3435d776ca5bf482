"""Request coalescing when a leader's client leaves before its answer has started
(core.cache.follow.detach): its request goes on for its followers instead of ending, so they
get the answer of the one upstream call, on its core and on another (through Redis); once
every follower has left too, the upstream call is cancelled. The official openai SDK -> edge
-> core -> the faults fake over loopback; the fake counts upstream calls and records when its
client (the core) closed a call it was still answering.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_faults import TEXT, FakeFaults
from tests.support.fake_openai import FakeOpenAI
from tests.support.ledger_load import sqlite_rows
from tests.support.stack import Cluster, Stack
from tests.test_coalesce_e2e import complete, overrides, streamed, unique

SLOW = "gpt-slow-leave"  # answered 1.5 s after the request (fault/slow/1.5)
SLOWER = "gpt-slower-leave"  # answered after 5 s: long enough for everyone to leave first
WHOLE = "Hello world"  # a streamed normal answer's text


def settings(fake: FakeOpenAI, claude: FakeAnthropic, faults: FakeFaults) -> dict[str, Any]:
    base = overrides(fake, claude, faults)
    base["models"][SLOW] = {"provider": "faults", "model": "fault/slow/1.5"}
    base["models"][SLOWER] = {"provider": "faults", "model": "fault/slow/5"}
    return base


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    fake: FakeOpenAI,
    claude: FakeAnthropic,
    faults: FakeFaults,
) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("detach"), settings(fake, claude, faults)).start()
    warm(running.edge_url, running.token(tenant="acme"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    fake: FakeOpenAI,
    claude: FakeAnthropic,
    faults: FakeFaults,
    redis_url: str,
) -> Iterator[Cluster]:
    config = {**settings(fake, claude, faults), "state": {"redis_url": redis_url}}
    running = Cluster(tmp_path_factory.mktemp("detach-2"), config, cores=2, edges=1)
    running.start()
    warm(running.edge_urls[0], running.token(tenant="acme"))
    yield running
    running.stop()


def warm(url: str, token: str) -> None:
    """Concurrent requests through a new stack, so the connections a test's requests take
    exist (a test times its leader's leaving after its followers joined)."""

    async def scenario() -> None:
        await asyncio.gather(*(complete(url, token, unique()) for _ in range(4)))

    asyncio.run(scenario())


def calls(faults: FakeFaults, messages: list[Any]) -> int:
    """Upstream calls the fake received for this conversation."""
    return sum(1 for r in faults.received if r.json and r.json.get("messages") == messages)


async def leaves(call: Any, after: float) -> float:
    """`call` (started now, unless it is a task already), its client gone (its connection
    closed) `after` seconds later, before any answer: when it left."""
    task = asyncio.ensure_future(call)
    await asyncio.sleep(after)
    assert not task.done()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return time.monotonic()


def left_slow(faults: FakeFaults, since: float, until: float) -> list[float]:
    """When the fake saw a slow call's client (a core) leave, since `since`; waits until one
    did, or `until`."""
    while True:
        seen = [at for kind, at in faults.left if kind == "slow" and at >= since]
        if seen or time.monotonic() > until:
            return seen
        time.sleep(0.05)


async def upstream_called(faults: FakeFaults, messages: list[Any]) -> None:
    """Until the fake has received the leader's call (its request is under way)."""
    for _ in range(500):  # 5 s at most
        if calls(faults, messages):
            return
        await asyncio.sleep(0.01)


def followers_after_leader_left(
    faults: FakeFaults, url: str, token: str, stream: bool, n: int
) -> list[Any]:
    """A slow request's leader, `n` identical requests joined once its upstream call was
    made, and the leader's client leaving 0.7 s after they were sent (time for them to reach
    the core on a busy machine; the answer comes 1.5 s after the call): what each follower
    got."""
    messages = unique()

    async def scenario() -> list[Any]:
        ask = streamed if stream else complete
        leader = asyncio.ensure_future(ask(url, token, messages, model=SLOW))
        await upstream_called(faults, messages)
        joined = [asyncio.ensure_future(ask(url, token, messages, model=SLOW)) for _ in range(n)]
        await asyncio.sleep(0.7)
        assert not leader.done()
        leader.cancel()  # its connection closed, before any answer
        await asyncio.gather(leader, return_exceptions=True)
        return [messages, *await asyncio.gather(*joined)]

    return asyncio.run(asyncio.wait_for(scenario(), 30))


@pytest.mark.parametrize("stream", [False, True])
def test_followers_get_the_answer_after_the_leader_left(
    stack: Stack, faults: FakeFaults, stream: bool
) -> None:
    messages, *answers = followers_after_leader_left(
        faults, stack.edge_url, stack.token(tenant="acme"), stream, 2
    )
    assert calls(faults, messages) == 1  # one upstream call, made for the leader, kept
    for answer in answers:
        if stream:
            text, headers, last = answer
            assert (text, headers["x-interlock-cache"]) == (WHOLE, "coalesced")
            assert last.choices[0].finish_reason == "stop"
        else:
            assert answer.headers["x-interlock-cache"] == "coalesced"
            assert answer.parse().choices[0].message.content == TEXT


def test_followers_on_another_core_get_the_answer_after_the_leader_left(
    cluster: Cluster, faults: FakeFaults
) -> None:
    """The edge balances round-robin: the leader on one core, its follower on the other;
    nobody follows on the leader's core, so it asks Redis before giving up."""
    messages, answer = followers_after_leader_left(
        faults, cluster.edge_urls[0], cluster.token(tenant="acme"), False, 1
    )
    assert calls(faults, messages) == 1
    assert answer.headers["x-interlock-cache"] == "coalesced"
    assert answer.parse().choices[0].message.content == TEXT


def everyone_leaves(faults: FakeFaults, url: str, token: str) -> tuple[list[Any], float, float]:
    """A slower request's leader, its follower joined once the upstream call was made; the
    leader's client leaves 0.3 s later, the follower's 1 s after that: the conversation, and
    when each left."""
    messages = unique()

    async def scenario() -> tuple[list[Any], float, float]:
        leader = asyncio.ensure_future(complete(url, token, messages, model=SLOWER))
        await upstream_called(faults, messages)
        follower = asyncio.ensure_future(leaves(complete(url, token, messages, model=SLOWER), 1.3))
        leader_left = await leaves(leader, 0.3)
        return messages, leader_left, await follower

    return asyncio.run(asyncio.wait_for(scenario(), 30))


@pytest.mark.parametrize("where", ["one core", "two cores"])
def test_the_upstream_call_is_cancelled_once_everyone_has_left(
    stack: Stack, cluster: Cluster, faults: FakeFaults, where: str
) -> None:
    url, token = (
        (stack.edge_url, stack.token(tenant="acme"))
        if where == "one core"
        else (cluster.edge_urls[0], cluster.token(tenant="acme"))
    )
    start = time.monotonic()
    messages, leader_left, follower_left = everyone_leaves(faults, url, token)
    seen = left_slow(faults, start, follower_left + 5)
    assert calls(faults, messages) == 1
    assert len(seen) == 1 and seen[0] > leader_left + 0.8  # kept after the leader left
    # ... and cancelled once the follower left (another core's, heard within a second)
    assert seen[0] - follower_left < (0.5 if where == "one core" else 2.0)


def test_a_leader_nobody_follows_is_cancelled_at_once(stack: Stack, faults: FakeFaults) -> None:
    start, messages = time.monotonic(), unique()

    async def scenario() -> float:
        url, token = stack.edge_url, stack.token(tenant="acme")
        leader = asyncio.ensure_future(complete(url, token, messages, model=SLOWER))
        await upstream_called(faults, messages)
        return await leaves(leader, 0.2)

    left = asyncio.run(scenario())
    seen = left_slow(faults, start, left + 5)
    assert len(seen) == 1 and seen[0] - left < 0.5


def test_the_detached_leader_is_billed_once_for_the_call(stack: Stack, faults: FakeFaults) -> None:
    """The ledger: the leader's record carries the one upstream call (outcome ok, priced),
    though its client left; its follower's is free."""
    tenant = "detach-ledger"
    _, answer = followers_after_leader_left(
        faults, stack.edge_url, stack.token(tenant=tenant), False, 1
    )
    path = stack.workdir / "state" / "ledger.sqlite3"
    rows: list[Any] = []
    for _ in range(100):
        rows = [r for r in sqlite_rows(path, 1) if r["tenant"] == tenant]
        if len(rows) == 2:
            break
        time.sleep(0.1)
    by_id = {r["request_id"]: r for r in rows}
    follower = by_id.pop(answer.headers["x-request-id"])
    assert (follower["outcome"], follower["cost_micros"]) == ("coalesced", 0)
    [leader] = by_id.values()
    assert leader["outcome"] == "ok" and leader["cost_micros"] > 0 and leader["output"] == 7
