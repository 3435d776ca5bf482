"""Idempotency-Key (core.cache.idempotency), end to end with the official SDKs: a retry gets
the first result without another upstream call or ledger record, streams included; a retry
in flight joins the first; another body is a 422; tenants never share keys; and two cores
sharing a private Redis behave as one.

The tenant `optout` has the response cache off, so only idempotency can spare an upstream call.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_openai import TEXT, FakeOpenAI
from tests.support.ledger_load import sqlite_rows
from tests.support.prom import by_label, scrape
from tests.support.redis_cluster import SharedState
from tests.support.stack import Cluster, Stack
from tests.test_response_cache_e2e import cache_overrides

TENANT = "optout"


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI, claude: FakeAnthropic
) -> Iterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("idempotency")
    running = Stack(workdir, cache_overrides(fake, claude)).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    fake: FakeOpenAI,
    claude: FakeAnthropic,
    shared_state: SharedState,
) -> Iterator[Cluster]:
    overrides = {**cache_overrides(fake, claude), "state": shared_state.state}
    running = Cluster(tmp_path_factory.mktemp("idem-cluster"), overrides, cores=2, edges=1)
    running.start()
    yield running
    running.stop()


def oai(stack: Stack, tenant: str = TENANT) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{stack.edge_url}/v1", api_key=stack.token(tenant=tenant), max_retries=0
    )


def aoai(url: str, token: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0)


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"retry-{uuid.uuid4().hex}"}


MESSAGES: list[Any] = [{"role": "user", "content": "Say hello"}]


def upstream(fake: FakeOpenAI, model: str = "gpt-fake") -> int:
    return sum(1 for r in fake.received if r.json and r.json.get("model") == model)


def create(stack: Stack, headers: dict[str, str], tenant: str = TENANT, **kw: Any) -> Any:
    kw.setdefault("messages", MESSAGES)
    return oai(stack, tenant).chat.completions.with_raw_response.create(
        model=kw.pop("model", "gpt-fake"), extra_headers=headers, **kw
    )


def test_retry_gets_the_first_result_once_billed(stack: Stack, fake: FakeOpenAI) -> None:
    headers = key()
    before = upstream(fake)
    first = create(stack, headers)
    again = create(stack, headers)
    assert upstream(fake) == before + 1
    assert again.headers["x-interlock-idempotent-replay"] == "true"
    assert "x-interlock-idempotent-replay" not in first.headers
    assert again.parse().model_dump() == first.parse().model_dump()
    assert again.headers["x-interlock-provider"] == first.headers["x-interlock-provider"]
    # One ledger record: the first request's; the replay is neither billed nor recorded.
    path = stack.workdir / "state" / "ledger.sqlite3"
    ids = {row["request_id"] for row in sqlite_rows(path, 1)}
    assert first.headers["x-request-id"] in ids
    assert again.headers["x-request-id"] not in ids


def test_stream_replayed(stack: Stack, fake: FakeOpenAI) -> None:
    headers = key()
    before = upstream(fake)
    texts = []
    for _ in range(2):
        stream = oai(stack).chat.completions.create(
            model="gpt-fake", messages=MESSAGES, stream=True, extra_headers=headers
        )
        texts.append("".join(c.choices[0].delta.content or "" for c in stream if c.choices))
    assert texts == [TEXT, TEXT]
    assert upstream(fake) == before + 1


def test_another_body_is_a_422_and_bad_keys_a_400(stack: Stack) -> None:
    headers = key()
    create(stack, headers)
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        create(stack, headers, temperature=0.2)
    assert caught.value.body["param"] == "Idempotency-Key"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as bad:
        create(stack, {"Idempotency-Key": "k" * 256})
    assert bad.value.body["param"] == "Idempotency-Key"  # type: ignore[index]
    client = anthropic.Anthropic(
        base_url=stack.edge_url, api_key=stack.token(tenant=TENANT), max_retries=0
    )
    messages_key = key()
    client.messages.create(
        model="claude-fake", max_tokens=16, messages=MESSAGES, extra_headers=messages_key
    )
    with pytest.raises(anthropic.UnprocessableEntityError) as refused:
        client.messages.create(
            model="claude-fake", max_tokens=17, messages=MESSAGES, extra_headers=messages_key
        )
    assert refused.value.body["type"] == "error"  # type: ignore[index]
    assert "Idempotency-Key" in refused.value.body["error"]["message"]  # type: ignore[index]


def test_tenants_never_share_a_key(stack: Stack, fake: FakeOpenAI) -> None:
    headers = key()
    before = upstream(fake)
    create(stack, headers, "tenant-a")
    other = create(stack, headers, "tenant-b")
    assert "x-interlock-idempotent-replay" not in other.headers
    assert upstream(fake) == before + 2


async def _concurrent(urls: list[str], token: str, headers: dict[str, str], n: int) -> list[Any]:
    async def one(url: str) -> Any:
        raw = await aoai(url, token).chat.completions.with_raw_response.create(
            model="gpt-slow", messages=MESSAGES, extra_headers=headers
        )
        return raw

    return list(await asyncio.gather(*(one(urls[k % len(urls)]) for k in range(n))))


def test_concurrent_retries_join_the_first(stack: Stack, fake: FakeOpenAI) -> None:
    before = upstream(fake, "slow-400")
    results = asyncio.run(_concurrent([stack.edge_url], stack.token(tenant=TENANT), key(), 3))
    assert upstream(fake, "slow-400") == before + 1
    bodies = {r.parse().choices[0].message.content for r in results}
    assert bodies == {TEXT}
    replays = [r.headers.get("x-interlock-idempotent-replay") for r in results]
    assert replays.count("true") == 2


def test_two_cores_sharing_redis(cluster: Cluster, fake: FakeOpenAI) -> None:
    before = upstream(fake, "slow-400")
    token = cluster.token(tenant=TENANT)
    # One edge balances round-robin: the requests land on both cores.
    results = asyncio.run(_concurrent(cluster.edge_urls, token, key(), 4))
    assert upstream(fake, "slow-400") == before + 1
    assert {r.parse().choices[0].message.content for r in results} == {TEXT}
    # The response cache is shared too: a miss on one core is a hit on the other.
    messages: list[Any] = [{"role": "user", "content": f"hello {uuid.uuid4().hex}"}]
    client = oai(cluster, "acme")
    first = client.chat.completions.with_raw_response.create(model="gpt-fake", messages=messages)
    second = client.chat.completions.with_raw_response.create(model="gpt-fake", messages=messages)
    assert first.headers["x-interlock-cache"] == "miss"
    assert second.headers["x-interlock-cache"] == "hit"


def test_a_failed_first_request_is_not_kept(stack: Stack, fake: FakeOpenAI) -> None:
    """A 5xx settles nothing: the claim is released and a retry runs again."""
    headers = key()
    counts = []
    for _ in range(2):
        with pytest.raises(openai.APIStatusError) as caught:
            create(stack, headers, model="gpt-500")
        assert caught.value.status_code >= 500
        assert "x-interlock-idempotent-replay" not in caught.value.response.headers
        counts.append(upstream(fake, "fail-500"))
    assert counts[1] > counts[0] > 0


def _idempotency_counts(stack: Stack) -> dict[str, int]:
    """interlock_idempotency_total by outcome, from the core's /metrics."""
    found = scrape(stack.core_admin_url)
    return by_label(found, "interlock_idempotency_total", "outcome")


def test_metrics_count_replays_joins_and_conflicts(stack: Stack) -> None:
    before = _idempotency_counts(stack)
    assert set(before) == {"executed", "replayed", "joined", "conflict", "in_flight_timeout"}
    headers = key()
    create(stack, headers)
    create(stack, headers)  # a replay
    with pytest.raises(openai.UnprocessableEntityError):
        create(stack, headers, temperature=0.2)  # the same key, another body
    # Three at once with one key: one runs, two wait for it (joined).
    asyncio.run(_concurrent([stack.edge_url], stack.token(tenant=TENANT), key(), 3))
    after = _idempotency_counts(stack)
    delta = {k: after[k] - before[k] for k in after}
    assert delta == {
        "executed": 2,
        "replayed": 1,
        "joined": 2,
        "conflict": 1,
        "in_flight_timeout": 0,
    }
