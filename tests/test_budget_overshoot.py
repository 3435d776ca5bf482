"""The overshoot bound, measured: two core replicas, one Redis (then a Redis Cluster), 200
concurrent requests against a $1 budget, with a mix of models, streams and a cheap target
whose fallback is expensive.

Every try reserves its own estimate (priced for its target) before it is sent, and a
reservation is admitted only if settled spend + live reservations + it fit the limit, so the
settled spend can pass the limit only by what served requests used beyond their estimate
(core.budgets.enforce). Here the estimate is exact on input (the mock counts prompt tokens as
the gateway estimates them) and an upper bound on output (max_tokens), so the bound is zero:
settled spend <= $1, exactly equal to the sum of what the served answers' usage costs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import aiohttp
import orjson
import pytest

from tests.support.budget_core import BUDGET_CORE
from tests.support.flat_pricing import PRICES
from tests.support.net import free_port
from tests.support.redis_cluster import SharedState
from tests.support.stack import Cluster

LIMIT_MICROS = 1_000_000
REQUESTS = 200
MODELS = ("pricey", "cheap", "cheap-then-pricey")


@pytest.fixture(scope="module")
def budget() -> str:
    return f"dollar-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, shared_state: SharedState, budget: str
) -> Iterator[Cluster]:
    overrides = {
        "state": shared_state.state,  # one Redis, then a Redis Cluster
        # 200 connections from one test client to two edges: above the per-client default.
        "edge": {"server": {"max_connections_per_client": REQUESTS}},
        "providers": {
            "mock": {"kind": "mock", "allow_any_model": True},
            "dead": {
                "kind": "openai",
                "base_url": f"http://127.0.0.1:{free_port()}/v1",
                "api_key": "sk-dead",
            },
        },
        "models": {
            "pricey": {"provider": "mock", "model": "mock-pricey"},
            "cheap": {"provider": "mock", "model": "mock-cheap"},
            "cheap-then-pricey": {
                "targets": [
                    {"provider": "dead", "model": "dead-cheap"},
                    {"provider": "mock", "model": "mock-pricey"},
                ]
            },
        },
        "budgets": {budget: {"tenant": "spender", "limit": "1.00"}},
    }
    work = tmp_path_factory.mktemp("overshoot")
    started = Cluster(work, overrides, cores=2, edges=2).start(core_app=BUDGET_CORE)
    yield started
    started.stop()


def cost_of(model: str, usage: dict[str, int]) -> int:
    per_in, per_out, _ = PRICES[model]
    return usage["prompt_tokens"] * per_in + usage["completion_tokens"] * per_out


async def one(client: aiohttp.ClientSession, url: str, token: str, n: int) -> tuple[int, int, str]:
    """(status, cost of the usage served, error code): every 3rd request streams."""
    stream = n % 3 == 0
    body = {
        "model": MODELS[n % len(MODELS)],
        "messages": [{"role": "user", "content": f"request {n} " + "word " * (n % 40)}],
        "max_tokens": 40 + n % 20,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    headers = {"authorization": f"Bearer {token}"}
    async with client.post(f"{url}/v1/chat/completions", json=body, headers=headers) as response:
        text = await response.text()
        status, served = response.status, response.headers.get("x-interlock-model", "")
    if status != 200:
        return status, 0, orjson.loads(text)["error"].get("code") or ""
    if not stream:
        return 200, cost_of(served, orjson.loads(text)["usage"]), ""
    usage = None
    for line in text.splitlines():
        if line.startswith("data: {"):
            usage = orjson.loads(line[6:]).get("usage") or usage
    assert usage is not None
    return 200, cost_of(served, usage), ""


def settled(shared_state: SharedState, budget: str) -> tuple[int, int]:
    """(settled spend, live reservations) of the budget's current period."""
    keys = [k for k in shared_state.keys(f"il:{{budgets}}:{budget}:*") if not k.endswith(b":x")]
    assert len(keys) == 1
    spent, held = shared_state.admin().hmget(keys[0], "s", "r")
    return int(spent or 0), int(held or 0)


def test_settled_spend_stays_within_the_bound(
    cluster: Cluster, shared_state: SharedState, budget: str
) -> None:
    token = cluster.token("spender")

    async def burst() -> list[tuple[int, int, str]]:
        connector = aiohttp.TCPConnector(limit=REQUESTS)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
            urls = cluster.edge_urls
            return await asyncio.gather(
                *(one(client, urls[n % len(urls)], token, n) for n in range(REQUESTS))
            )

    results = asyncio.run(burst())
    served = [cost for status, cost, _ in results if status == 200]
    refused = [code for status, _, code in results if status != 200]
    assert refused and set(refused) == {"budget_exceeded"}, refused[:5]
    assert len(served) > 20
    for _ in range(200):  # both cores settle in the background (every 50 ms)
        spent, held = settled(shared_state, budget)
        if held == 0 and spent == sum(served):
            break
        asyncio.run(asyncio.sleep(0.05))
    assert held == 0
    assert spent == sum(served)  # every served answer settled once, at its actual cost
    assert spent <= LIMIT_MICROS  # the bound: zero overshoot when estimates cover usage
    assert spent > LIMIT_MICROS // 2  # and the budget was really used up
