"""What request coalescing costs a leading miss nobody follows: CPU (this process) and Redis
commands per miss, driving core.cache.coalesce's Coalescer directly against a private
redis-server, and the in-memory join without Redis.

    PYTHONPATH=<tree> python tests/bench/coalesce_cost.py [--misses N]

Run it with PYTHONPATH at two trees (this file's path given whole) to compare them: it uses
only what both versions have (Coalescer.join, Flight.start/add/end, the RESP client). Each
workload is run twice, with and without coalescing (the same awaits, a bare Flight), and the
difference is coalescing's: CPU from time.process_time, round trips counted on the client.
Figures from a shared VM are noisy: alternate the trees a few times.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from core.cache.coalesce import DONE, Coalescer, Flight
from core.state.redis_store import RedisStore
from tests.support.redis_server import RedisServer

META = {"media": "text/event-stream", "headers": {}}
Work = Callable[[Flight], Awaitable[None]]


async def complete(flight: Flight) -> None:
    """A complete answer 50 ms after the call."""
    await asyncio.sleep(0.05)
    flight.start(META)
    flight.add(b'{"choices": []}' * 40)
    flight.end(DONE, {"prompt_tokens": 12})


async def stream(flight: Flight) -> None:
    """A 0.5 s stream: 25 chunks 20 ms apart, from its first chunk 50 ms after the call."""
    await asyncio.sleep(0.05)
    flight.start(META)
    for _ in range(25):
        flight.add(b'data: {"choices": [{"delta": {"content": "word"}}]}\n\n')
        await asyncio.sleep(0.02)
    flight.end(DONE, {"prompt_tokens": 12})


async def run(coalescer: Coalescer | None, work: Work, misses: int, width: int) -> float:
    """CPU seconds for `misses` leading misses, `width` at a time; each waits for its
    coalescer's own tasks (the lock's release) to end too."""
    prefix = uuid.uuid4().hex
    lanes = iter(range(misses))

    async def lane() -> None:
        for i in lanes:
            if coalescer is None:
                await work(Flight(1 << 22))
                continue
            joined = await coalescer.join(f"cache:{{t}}:{prefix}-{i}:co:s", 600, 1 << 22)
            assert joined is not None and joined[1], "every request here leads"
            await work(joined[0])

    start = time.process_time()
    await asyncio.gather(*(lane() for _ in range(width)))
    tasks: set[Any] = getattr(coalescer, "_tasks", set())
    while tasks:
        await asyncio.gather(*tasks)
    return time.process_time() - start


def count_round_trips(store: RedisStore) -> list[int]:
    """A counter of the calls the store's client makes (each one round trip)."""
    counter, call = [0], store._client.call

    async def counted(*args: Any) -> Any:
        counter[0] += 1
        return await call(*args)

    store._client.call = counted  # type: ignore[method-assign]
    return counter


async def round_trip_cpu(store: RedisStore, n: int) -> float:
    """CPU seconds of one round trip (an HGET), for scale."""
    start = time.process_time()
    for _ in range(n):
        await store._client.call("HGET", "bench:{t}:none", "w")
    return (time.process_time() - start) / n


async def main(url: str, misses: int) -> None:
    store = RedisStore(url)
    await store.ping()
    print(f"one Redis round trip: {await round_trip_cpu(store, misses) * 1e6:.1f} us CPU")
    counter = count_round_trips(store)
    for name, work, n in (("complete", complete, misses), ("stream", stream, misses // 4)):
        bare = await run(None, work, n, 50)
        before = counter[0]
        shared = await run(Coalescer(store), work, n, 50)
        print(
            f"{name:9} leading miss, Redis: {(shared - bare) / n * 1e6:7.1f} us CPU, "
            f"{(counter[0] - before) / n:5.2f} round trips per miss ({n} misses)"
        )
    await store.close()
    local, n = Coalescer(None), misses * 20

    async def instant(flight: Flight) -> None:
        flight.end(DONE)

    bare = await run(None, instant, n, 1)
    alone = await run(local, instant, n, 1)
    print(f"in memory: join + end {(alone - bare) / n * 1e6:.2f} us CPU per leading miss")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--misses", type=int, default=2000)
    args = parser.parse_args()
    server = RedisServer(Path(tempfile.mkdtemp(prefix="coalesce-bench"))).start()
    try:
        asyncio.run(main(server.url, args.misses))
    finally:
        server.stop()
