"""A/B of the two Redis clients on the core's hot-path call: CPU per EVALSHA.

    .venv/bin/python -m tests.bench.resp_ab [--calls 20000] [--rounds 3] [--concurrency 50]

Runs the token-bucket script (two buckets, as a tenant's RPM+TPM admission) against a private
redis-server, on uvloop like the core, through the lean client (core/state/resp.py, what the
core uses) and through redis-py's asyncio client (a registered Script, as the store used before
for rediss:// and unix://). CPU is this process's user+system time only (redis-server runs
apart), divided by the calls made; rounds alternate the clients and the median is printed.
This is why the lean client stays despite a second implementation of the wire protocol.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio
import uvloop

from core.state.redis_store import _TAKE_FIRST, Script
from core.state.resp import RespClient
from tests.support.redis_server import RedisServer

Call = Callable[[list[str], list[float]], Awaitable[Any]]
KEYS = ["bench:{t}:rpm", "bench:{t}:tpm"]
ARGS: list[float] = [1, 2, 1e9, 1e6, 1, 0, 1e9, 1e6, 100, 0]  # one group of two buckets


async def _drive(call: Call, calls: int, concurrency: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) for `calls` calls, `concurrency` in flight."""
    await call(KEYS, ARGS)  # connect and load the script outside the measurement
    share = calls // concurrency

    async def worker() -> None:
        for _ in range(share):
            await call(KEYS, ARGS)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.process_time() - cpu, time.perf_counter() - wall


async def _lean(url: str, calls: int, concurrency: int) -> tuple[float, float]:
    client = RespClient(url)
    try:
        return await _drive(Script(client, _TAKE_FIRST), calls, concurrency)
    finally:
        await client.close()


async def _redis_py(url: str, calls: int, concurrency: int) -> tuple[float, float]:
    client = redis.asyncio.Redis.from_url(url, max_connections=concurrency)
    script = client.register_script(_TAKE_FIRST)

    async def call(keys: list[str], args: list[float]) -> Any:
        return await script(keys=keys, args=args)

    try:
        return await _drive(call, calls, concurrency)
    finally:
        await client.aclose()


def measure(url: str, calls: int, rounds: int, concurrency: int) -> dict[str, list[float]]:
    """Microseconds of CPU per call, per client, one entry per round."""
    results: dict[str, list[float]] = {"lean": [], "redis-py": []}
    runners = {"lean": _lean, "redis-py": _redis_py}
    for _ in range(rounds):
        for name, runner in runners.items():
            cpu, _wall = uvloop.run(runner(url, calls, concurrency))
            results[name].append(cpu / (calls // concurrency * concurrency) * 1e6)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, action="append")
    options = parser.parse_args()
    server = RedisServer(Path(tempfile.mkdtemp(prefix="resp-ab-"))).start()
    try:
        print(f"CPU per EVALSHA call, microseconds (median of {options.rounds} rounds)")
        print("| concurrency | lean | redis-py | redis-py / lean |")
        print("|---|---|---|---|")
        for concurrency in options.concurrency or [1, 50]:
            found = measure(server.url, options.calls, options.rounds, concurrency)
            lean, stock = (statistics.median(found[k]) for k in ("lean", "redis-py"))
            print(f"| {concurrency} | {lean:.1f} | {stock:.1f} | {stock / lean:.2f}x |")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
