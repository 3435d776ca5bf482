"""CPU per request that tracing adds to the core: off, on at 100% sampling (exported over OTLP
HTTP to a loopback receiver), and on with a sampler that keeps (almost) nothing.

    .venv/bin/python -m tests.bench.tracing_cost [--requests 2000] [--rounds 3]

Each variant is a real edge + core (tests/support/stack.py) serving the mock provider; requests
are sent one at a time (aiohttp, through the edge, each with a client traceparent), and the
core process's own CPU (utime+stime from /proc, every thread: the span export thread too) is
divided by the requests made. Rounds alternate the variants; the median per variant is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from tests.bench.procstats import cpu_seconds
from tests.support.otlp_receiver import OtlpHttpReceiver
from tests.support.stack import Stack

BODY = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


def _variants(endpoint: str) -> dict[str, dict[str, Any]]:
    on = {"enabled": True, "endpoint": endpoint}
    return {"off": {}, "on-100%": on, "on-ratio-1e-9": {**on, "sample_ratio": 1e-9}}


async def _send(stack: Stack, count: int) -> None:
    headers = {"authorization": f"Bearer {stack.token()}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for _ in range(count):
            traceparent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
            async with session.post(
                f"{stack.edge_url}/v1/chat/completions",
                json=BODY,
                headers={"traceparent": traceparent},
            ) as response:
                await response.read()
                assert response.status == 200, response.status


def _measure(workdir: Path, tracing: dict[str, Any], requests: int) -> float:
    """Core CPU microseconds per request."""
    overrides = {"tracing": tracing} if tracing else {}
    stack = Stack(workdir, overrides)
    stack.env.update({"NO_PROXY": "*", "no_proxy": "*"})
    stack.start()
    try:
        asyncio.run(_send(stack, 300))  # warm-up: connections, caches, first exports
        core = stack.processes[0].pid
        before = cpu_seconds(core)
        asyncio.run(_send(stack, requests))
        return (cpu_seconds(core) - before) / requests * 1e6
    finally:
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    receiver = OtlpHttpReceiver().start()
    results: dict[str, list[float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for round_ in range(args.rounds):
                for name, tracing in _variants(receiver.endpoint).items():
                    cpu = _measure(Path(tmp) / f"{name}-{round_}", tracing, args.requests)
                    results.setdefault(name, []).append(cpu)
                    print(f"round {round_} {name}: {cpu:.0f} us CPU/request", flush=True)
    finally:
        receiver.stop()
    off = statistics.median(results["off"])
    for name, values in results.items():
        median = statistics.median(values)
        print(f"{name:>14}: median {median:.0f} us/request ({median - off:+.0f} vs off)")
    print(f"spans received: {len(receiver.spans())}")


if __name__ == "__main__":
    main()
