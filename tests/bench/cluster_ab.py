"""A/B of the Redis Cluster clients on the core's hot-path call: CPU per EVALSHA.

    .venv/bin/python -m tests.bench.cluster_ab [--calls 20000] [--rounds 3] [--concurrency 50]

Runs the token-bucket script (a tenant's RPM+TPM admission: two keys, one hash tag) for 64
tenants spread over the three primaries of a private Redis Cluster (tests/support/
redis_cluster.py), on uvloop like the core, through:
- `lean-cluster`: the lean client taught the cluster (core/state/cluster.py, what the core uses
  with `state.cluster: true`);
- `redis-py-cluster`: redis-py's `redis.asyncio.cluster.RedisCluster` (a registered Script);
- `lean-node`: the lean client on one node of the same cluster, every tenant's key hashed to
  that node's slots (the single-node baseline: what routing by slot adds).
CPU is this process's user+system time only (redis-server runs apart), divided by the calls
made; rounds alternate the clients and the median is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio.cluster
import uvloop
from redis.crc import key_slot

from core.state.cluster import ClusterClient
from core.state.redis_store import _TAKE_FIRST, Script
from core.state.resp import RespClient
from tests.support.redis_cluster import RedisClusterServer

Call = Callable[[list[str], list[float]], Awaitable[Any]]
ARGS: list[float] = [1, 2, 1e9, 1e6, 1, 0, 1e9, 1e6, 100, 0]  # one group of two buckets
TENANTS = 64


def tenant_keys(tags: list[str]) -> itertools.cycle[list[str]]:
    return itertools.cycle([[f"il:{{t:{tag}}}:rpm", f"il:{{t:{tag}}}:tpm"] for tag in tags])


async def _drive(call: Call, tags: list[str], calls: int, concurrency: int) -> float:
    """CPU seconds for `calls` calls, `concurrency` in flight."""
    keys = tenant_keys(tags)
    for _ in range(len(tags)):
        await call(next(keys), ARGS)  # connect and load the script outside the measurement
    share = calls // concurrency

    async def worker() -> None:
        for _ in range(share):
            await call(next(keys), ARGS)

    cpu = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.process_time() - cpu


async def _lean_cluster(url: str, tags: list[str], calls: int, concurrency: int) -> float:
    client = ClusterClient(url)
    try:
        return await _drive(Script(client, _TAKE_FIRST), tags, calls, concurrency)
    finally:
        await client.close()


async def _lean_node(url: str, tags: list[str], calls: int, concurrency: int) -> float:
    client = RespClient(url)
    try:
        return await _drive(Script(client, _TAKE_FIRST), tags, calls, concurrency)
    finally:
        await client.close()


async def _redis_py(url: str, tags: list[str], calls: int, concurrency: int) -> float:
    client = redis.asyncio.cluster.RedisCluster.from_url(url, max_connections=concurrency)
    script = client.register_script(_TAKE_FIRST)

    async def call(keys: list[str], args: list[float]) -> Any:
        return await script(keys=keys, args=args)

    try:
        return await _drive(call, tags, calls, concurrency)
    finally:
        await client.aclose()


def local_tags(cluster: RedisClusterServer, port: int) -> list[str]:
    """Tenant tags whose slots the primary on `port` owns (the single-node baseline)."""
    first, last = next((f, la) for f, la, p in cluster.ranges() if p == port)
    tags = (f"n{n}" for n in itertools.count())
    return list(
        itertools.islice((t for t in tags if first <= key_slot(f"t:{t}".encode()) <= last), TENANTS)
    )


def measure(
    cluster: RedisClusterServer, calls: int, rounds: int, concurrency: int
) -> dict[str, list[float]]:
    """Microseconds of CPU per call, per client, one entry per round."""
    spread = [f"s{n}" for n in range(TENANTS)]
    seed = cluster.ranges()[0][2]
    node_url = f"redis://127.0.0.1:{seed}/0"
    runners = {
        "lean-node": (_lean_node, node_url, local_tags(cluster, seed)),
        "lean-cluster": (_lean_cluster, cluster.url, spread),
        "redis-py-cluster": (_redis_py, cluster.url, spread),
    }
    results: dict[str, list[float]] = {name: [] for name in runners}
    made = calls // concurrency * concurrency
    for _ in range(rounds):
        for name, (runner, url, tags) in runners.items():
            results[name].append(uvloop.run(runner(url, tags, calls, concurrency)) / made * 1e6)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, action="append")
    options = parser.parse_args()
    cluster = RedisClusterServer(Path(tempfile.mkdtemp(prefix="cluster-ab-"))).start()
    try:
        print(f"CPU per EVALSHA call, microseconds (median of {options.rounds} rounds)")
        print(
            "| concurrency | lean, one node | lean, cluster | redis-py cluster | redis-py / lean |"
        )
        print("|---|---|---|---|---|")
        for concurrency in options.concurrency or [1, 50]:
            found = measure(cluster, options.calls, options.rounds, concurrency)
            node, lean, stock = (
                statistics.median(found[k])
                for k in ("lean-node", "lean-cluster", "redis-py-cluster")
            )
            print(
                f"| {concurrency} | {node:.1f} | {lean:.1f} | {stock:.1f} | {stock / lean:.2f}x |"
            )
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
