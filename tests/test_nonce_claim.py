"""The hop nonce's claim, settled only before the request acts (core.api.nonce_claim).

A pipeline route starts the claim (one SET NX, on the wire before the request runs on) when
the credential and the body check out, and settles it before the request acts. What must not
change: a replayed credential is refused with its 401, never reaches a provider, never gets
an answer from the response cache, never takes from the tenant's rate limits, and a replay of
a request that was refused for its content is still a 401. Checked against a real core with
its state in a real Redis, the fake OpenAI behind it, requests signed as the edge signs them
and delivered straight to the core's port.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from core.api.nonce_claim import NonceClaim
from core.state.redis_store import RedisStore
from shared import hop
from shared.errors import GatewayError
from tests.support import hop_client, raw
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_openai import FakeOpenAI
from tests.support.stack import Stack
from tests.test_response_cache_e2e import cache_overrides


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    fake: FakeOpenAI,
    claude: FakeAnthropic,
    redis_url: str,
) -> Iterator[Stack]:
    overrides = cache_overrides(fake, claude)
    overrides["state"] = {"redis_url": redis_url}
    overrides["limits"]["tenants"]["hits"] = {"rpm": 3, "tpm": 100_000, "burst": 1}
    running = Stack(tmp_path_factory.mktemp("nonce-claim"), overrides).start()
    yield running
    running.stop()


class Credential:
    """One signed request, deliverable any number of times (the first is the real one)."""

    def __init__(self, stack: Stack, body: dict[str, Any], tenant: str = "acme") -> None:
        secret = stack.env["INTERLOCK_HOP_SECRET"]
        self.url = f"{stack.core_url}/v1/chat/completions"
        self.headers, self.data = hop_client.signed(secret, body, tenant=tenant, tier="default")

    def deliver(self) -> raw.RawResponse:
        return raw.post(self.url, self.data, headers=self.headers)


def replayed(response: raw.RawResponse) -> bool:
    error = response.json()["error"]
    return (
        response.status == 401
        and error["code"] == "invalid_hop_credential"
        and response.headers.get(hop.REFUSED_HEADER) == hop.REFUSED_REPLAYED
    )


def chat(model: str, text: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}]}


def test_a_replay_never_reaches_the_provider(stack: Stack, fake: FakeOpenAI) -> None:
    credential = Credential(stack, chat("gpt-uncached", "replay me"))
    before = len(fake.received)
    assert credential.deliver().status == 200
    for _ in range(3):
        assert replayed(credential.deliver())
    assert len(fake.received) == before + 1


def test_a_replay_gets_no_answer_from_the_response_cache(stack: Stack, fake: FakeOpenAI) -> None:
    body = chat("gpt-fake", "cached, then replayed")
    first, second = Credential(stack, body), Credential(stack, body)
    before = len(fake.received)
    assert first.deliver().headers["x-interlock-cache"] == "miss"
    assert second.deliver().headers["x-interlock-cache"] == "hit"  # the cache would answer
    for credential in (first, second):
        again = credential.deliver()
        assert replayed(again), again.body
        assert "x-interlock-cache" not in again.headers
    assert len(fake.received) == before + 1


def test_a_replay_of_a_refused_request_is_still_a_401(stack: Stack) -> None:
    credential = Credential(stack, {"model": "gpt-fake"})  # no messages
    first = credential.deliver()
    assert first.status == 400, first.body
    assert replayed(credential.deliver())


def test_replays_take_nothing_from_the_tenants_rate_limits(stack: Stack) -> None:
    """`limited` may make 3 requests a minute (no burst beyond): one real request, five
    replays of it, then exactly two more real requests pass and the next is a 429."""

    def fresh() -> Credential:
        return Credential(stack, chat("gpt-uncached", "limited"), tenant="limited")

    real = fresh()
    assert real.deliver().status == 200
    for _ in range(5):
        assert replayed(real.deliver())
    assert [fresh().deliver().status for _ in range(3)] == [200, 200, 429]


def test_replays_answered_from_the_cache_take_nothing_from_the_limits_either(
    stack: Stack,
) -> None:
    """A cache hit counts one request against the limits; a replay of it counts none."""
    body = chat("gpt-fake", "hits")
    first, hit = Credential(stack, body, "hits"), Credential(stack, body, "hits")
    assert first.deliver().headers["x-interlock-cache"] == "miss"
    assert hit.deliver().headers["x-interlock-cache"] == "hit"
    for _ in range(4):
        assert replayed(hit.deliver())
    last = Credential(stack, body, "hits").deliver()
    assert last.headers["x-interlock-cache"] == "hit"  # the third request of the minute
    assert Credential(stack, body, "hits").deliver().status == 429


def test_a_claim_that_fails_fails_whoever_settles_it() -> None:
    async def main() -> None:
        async def refused() -> None:
            await asyncio.sleep(0)
            raise GatewayError(401, "replayed", code="invalid_hop_credential")

        claim = NonceClaim(refused())
        for _ in range(2):  # the endpoint settles after a stage did: the same answer
            with pytest.raises(GatewayError) as caught:
                await claim.settled()
            assert caught.value.status == 401

    asyncio.run(main())


def test_a_claim_runs_to_its_end_when_its_request_is_cancelled() -> None:
    """A credential once presented stays spent: cancelling the request that waits for the
    claim does not cancel the claim."""

    async def main() -> None:
        stored: list[str] = []
        release = asyncio.Event()

        async def claim_nonce() -> None:
            await release.wait()
            stored.append("nonce")

        claim = NonceClaim(claim_nonce())
        waiting = asyncio.ensure_future(claim.settled())
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()
        await asyncio.sleep(0.01)
        assert stored == ["nonce"]

    asyncio.run(main())


def test_a_started_claim_is_on_the_wire_before_the_request_runs_on(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    """Its answer is to be back by the time the request acts: the SET must leave when the
    claim starts, not when the request next waits (with rate-limit leases, nothing else the
    request does calls Redis before it settles the claim)."""
    key = f"nonce-claim-test:{id(sync_redis)}"

    async def main() -> None:
        store = RedisStore(redis_url)
        try:
            await store.claim(key + ":warm", 5)  # connected

            async def claimed() -> None:
                assert await store.claim(key, 5)

            claim = await NonceClaim.start(claimed())
            # The loop is blocked from here on: only a SET already written can reach Redis.
            deadline = time.monotonic() + 2
            while not sync_redis.exists(key) and time.monotonic() < deadline:
                time.sleep(0.001)  # noqa: ASYNC251 - blocking the loop is the point
            assert sync_redis.exists(key)
            await claim.settled()
        finally:
            await store.close()

    asyncio.run(main())


def test_a_claim_in_memory_starts_without_yielding() -> None:
    """Only a claim with a command to send makes its request yield (one loop turn each)."""

    async def main() -> None:
        ran: list[bool] = []

        async def claimed() -> None:
            ran.append(True)

        local = await NonceClaim.start(claimed(), remote=False)
        assert ran == []  # its task has not run: the request went on at once
        await local.settled()
        remote = await NonceClaim.start(claimed())
        assert ran == [True, True]  # its first step ran before the request went on
        await remote.settled()

    asyncio.run(main())
