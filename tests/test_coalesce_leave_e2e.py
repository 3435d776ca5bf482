"""Request coalescing when a leader's client leaves mid-stream (core.cache.follow): its
followers still get the whole answer from the one upstream call, on its core and on another
(through Redis), and the upstream stream is closed at once when nobody is left to read it.
The official openai SDK -> edge -> core -> the faults fake over loopback; the fake counts
upstream calls and records when its client (the core) closed a stalled stream.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests import test_coalesce_e2e as e2e
from tests.support.fake_faults import FakeFaults
from tests.support.ledger_load import sqlite_rows
from tests.support.stack import Cluster, Stack
from tests.test_coalesce_e2e import (
    STALL,
    TRICKLE,
    WHOLE,
    client,
    outcomes,
    streamed,
    unique,
    upstream,
)

stack, cluster = e2e.stack, e2e.cluster  # this module's own (module-scoped) stacks
TRICKLE_AS = "gpt-trickle"  # the model name TRICKLE is served under


async def leave_after(
    url: str, token: str, messages: list[Any], model: str, hold: float = 0.0
) -> tuple[str, float]:
    """A stream whose client closes its socket `hold` seconds after its first content chunk:
    its request id, and when it left."""
    sdk = client(url, token)
    raw = await sdk.chat.completions.with_raw_response.create(
        model=model, messages=messages, stream=True
    )
    stream = raw.parse()
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    await asyncio.sleep(hold)
    await stream.close()  # the connection is closed mid-stream
    await sdk.close()
    return str(raw.headers["x-request-id"]), time.monotonic()


def leader_leaves(cluster: Cluster, token: str, followers: int) -> tuple[str, list[Any]]:
    """A trickling stream's leader, its client leaving mid-stream, shortly after `followers`
    identical requests (0.2 s apart, round-robin over the cores) joined: its request id, and
    what each follower read (text, headers, last chunk)."""
    url, messages = cluster.edge_urls[0], unique()

    async def scenario() -> tuple[str, list[Any]]:
        sdk = client(url, token)
        raw = await sdk.chat.completions.with_raw_response.create(
            model=TRICKLE_AS, messages=messages, stream=True
        )
        stream, seen, joined = raw.parse(), 0, []
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                seen += 1
                if seen == 3:
                    break
        for _ in range(followers):
            joined.append(asyncio.ensure_future(streamed(url, token, messages, model=TRICKLE_AS)))
            await asyncio.sleep(0.2)
        await stream.close()  # the leader's client leaves, its followers mid-stream
        await sdk.close()
        return str(raw.headers["x-request-id"]), list(await asyncio.gather(*joined))

    return asyncio.run(asyncio.wait_for(scenario(), 30))


def whole(followed: list[Any]) -> None:
    """Every follower read the whole, well-formed stream."""
    for text, headers, last in followed:
        assert text == WHOLE and headers["x-interlock-cache"] == "coalesced"
        assert last.choices[0].finish_reason == "stop"


def test_a_leader_leaving_mid_stream_leaves_its_followers_the_whole_answer(
    cluster: Cluster, faults: FakeFaults
) -> None:
    """The leader's client closes its socket mid-stream while a follower on the other core
    and one on its own read (the edge balances round-robin): the upstream stream goes on for
    them, both get the whole stream from the one call, and the ledger has the leader's billed
    record (the whole answer's usage) and the followers' free ones."""
    before = upstream(faults, TRICKLE), [outcomes(p) for p in cluster.core_admin_ports]
    leader, followed = leader_leaves(cluster, cluster.token(tenant="coalesce-leave"), 2)
    whole(followed)
    assert upstream(faults, TRICKLE) == before[0] + 1
    after = [outcomes(p) for p in cluster.core_admin_ports]
    assert all(a["coalesced"] == b["coalesced"] + 1 for a, b in zip(after, before[1], strict=True))
    ids = [leader, *(str(headers["x-request-id"]) for _, headers, _ in followed)]
    rows = ledger_rows(cluster.workdir / "state" / "ledger.sqlite3", ids)
    billed = rows[leader]  # the upstream call's record: it answered in full, and is paid so
    assert (billed["outcome"], billed["output"]) == ("ok", 7) and billed["cost_micros"] > 0
    assert [(rows[i]["outcome"], rows[i]["cost_micros"]) for i in ids[1:]] == [("coalesced", 0)] * 2


def test_a_leader_leaving_with_its_only_follower_on_another_core(
    cluster: Cluster, faults: FakeFaults
) -> None:
    """Nobody follows on the leader's core: it asks Redis before giving up, and the upstream
    stream goes on for the other core's follower."""
    before = upstream(faults, TRICKLE), [outcomes(p) for p in cluster.core_admin_ports]
    _, followed = leader_leaves(cluster, cluster.token(tenant="coalesce-leave"), 1)
    whole(followed)
    assert upstream(faults, TRICKLE) == before[0] + 1
    after = [outcomes(p) for p in cluster.core_admin_ports]
    led = [k for k in (0, 1) if after[k]["miss"] > before[1][k]["miss"]]
    remote = [k for k in (0, 1) if after[k]["coalesced"] > before[1][k]["coalesced"]]
    assert len(led) == 1 and len(remote) == 1 and led != remote


def ledger_rows(path: Any, ids: list[str]) -> dict[str, Any]:
    """The ledger's records of `ids`, once they are all written (the writer flushes later)."""
    rows: dict[str, Any] = {}
    for _ in range(150):
        rows = {row["request_id"]: row for row in sqlite_rows(path, 1)}
        if all(i in rows for i in ids):
            return rows
        time.sleep(0.1)
    raise AssertionError(f"not in the ledger: {[i for i in ids if i not in rows]}")


def stall_left(faults: FakeFaults, since: float, until: float) -> list[float]:
    """When the fake saw a stalled stream's client (the core) leave, since `since`; waits
    until one did, or `until`."""
    while True:
        seen = [at for kind, at in faults.left if kind == "stall-mid" and at >= since]
        if seen or time.monotonic() > until:
            return seen
        time.sleep(0.05)


def test_a_leader_leaving_with_no_follower_closes_the_upstream_at_once(
    stack: Stack, faults: FakeFaults
) -> None:
    start = time.monotonic()
    _, left = asyncio.run(leave_after(stack.edge_url, stack.token(tenant="acme"), unique(), STALL))
    seen = stall_left(faults, start, left + 5)
    assert len(seen) == 1 and seen[0] - left < 1.0


def leader_then_follower_leave(url: str, token: str) -> tuple[float, float]:
    """A stalled stream's leader leaves 0.8 s after its first chunk; its follower (joined at
    0.3 s, on the next core) 1.5 s after its own: when each left."""
    messages = unique()

    async def scenario() -> tuple[float, float]:
        leader = asyncio.ensure_future(leave_after(url, token, messages, STALL, 0.8))
        await asyncio.sleep(0.3)  # the leader is mid-stream (stalled after its first chunks)
        follower = leave_after(url, token, messages, STALL, 1.5)
        (_, follower_left), (_, leader_left) = await asyncio.gather(follower, leader)
        return leader_left, follower_left

    return asyncio.run(asyncio.wait_for(scenario(), 30))


def test_the_upstream_goes_on_until_the_last_follower_leaves(
    stack: Stack, faults: FakeFaults
) -> None:
    """The leader leaves first: the upstream stream is kept for its follower; then the
    follower leaves too: the upstream stream is closed at once, not left running."""
    start = time.monotonic()
    leader_left, follower_left = leader_then_follower_leave(
        stack.edge_url, stack.token(tenant="acme")
    )
    seen = stall_left(faults, start, follower_left + 5)
    assert follower_left > leader_left + 0.9
    assert len(seen) == 1 and seen[0] > leader_left + 0.9  # one call, open after the leader left
    assert seen[0] - follower_left < 1.0  # and closed as soon as the follower left


def test_the_upstream_goes_on_until_the_other_cores_follower_leaves(
    cluster: Cluster, faults: FakeFaults
) -> None:
    """The same across cores: the follower's core stops polling and tells Redis; the leader
    hears it at its next heartbeat (a second at most) and closes the upstream stream."""
    start = time.monotonic()
    leader_left, follower_left = leader_then_follower_leave(
        cluster.edge_urls[0], cluster.token(tenant="acme")
    )
    seen = stall_left(faults, start, follower_left + 5)
    assert len(seen) == 1 and seen[0] > leader_left + 0.9
    assert seen[0] - follower_left < 2.0
