"""The floor: bare pass-through hops (Starlette + aiohttp on uvicorn), and an OTLP sink.

    python -m tests.bench.floor hop --port P --target http://127.0.0.1:U   # one hop
    python -m tests.bench.floor sink --port P                               # OTLP/HTTP sink

A hop reads the request, posts it to `target` + the same path with one pooled aiohttp session,
and answers with the upstream's bytes (streams relayed chunk by chunk). No auth, no parsing,
no accounting: the least any Python gateway tier on this stack can cost. Two hops in series are
the floor for a two-tier gateway (edge + core), which is what interlock is measured against.

The sink accepts OTLP/HTTP trace exports and throws them away (counting exports and bytes at
/stats), so tracing's cost in the bench is the exporter's, not a collector's decoding.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.bench.stack import ROOT, Processes, wait_ready
from tests.support.net import free_port

_FORWARDED = ("content-type", "authorization", "accept")


def hop_app(target: str) -> Starlette:
    """One bare hop to `target` (a base URL without the path)."""
    state: dict[str, aiohttp.ClientSession] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
            state["session"] = session
            yield

    async def relay(upstream: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.content.iter_any():
                yield chunk
        finally:
            upstream.release()

    async def forward(request: Request) -> Response:
        body = await request.body()
        headers = {k: v for k in _FORWARDED if (v := request.headers.get(k)) is not None}
        upstream = await state["session"].post(
            target + request.url.path, data=body, headers=headers
        )
        media = upstream.headers.get("content-type", "application/json")
        if media.startswith("text/event-stream"):
            return StreamingResponse(relay(upstream), upstream.status, media_type=media)
        data = await upstream.read()
        upstream.release()
        return Response(data, upstream.status, media_type=media)

    async def healthz(request: Request) -> Response:
        return Response(b"ok")

    routes = [Route("/healthz", healthz), Route("/{path:path}", forward, methods=["POST"])]
    return Starlette(routes=routes, lifespan=lifespan)


def sink_app() -> Starlette:
    """Accepts OTLP/HTTP exports (an empty ExportTraceServiceResponse is zero bytes)."""
    stats = {"exports": 0, "bytes": 0}

    async def traces(request: Request) -> Response:
        body = await request.body()
        stats["exports"] += 1
        stats["bytes"] += len(body)
        return Response(b"", media_type="application/x-protobuf")

    async def read_stats(request: Request) -> Response:
        return Response(orjson.dumps(stats), media_type="application/json")

    async def healthz(request: Request) -> Response:
        return Response(b"ok")

    routes = [
        Route("/v1/traces", traces, methods=["POST"]),
        Route("/stats", read_stats),
        Route("/healthz", healthz),
    ]
    return Starlette(routes=routes)


def _argv(kind: str, port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tests.bench.floor", kind, "--port", str(port), *extra]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def start_hops(
    procs: Processes, upstream_url: str, hops: int, name: str
) -> tuple[str, dict[str, int]]:
    """`hops` bare hops in series in front of `upstream_url`; returns the first's URL and the
    pids (`<name>1` is the one clients call)."""
    target, pids = upstream_url, dict[str, int]()
    for number in range(hops, 0, -1):
        port = free_port()
        label = f"{name}{number}" if hops > 1 else name
        process = procs.spawn(label, _argv("hop", port, "--target", target), _env())
        target = f"http://127.0.0.1:{port}"
        wait_ready(procs, label, f"{target}/healthz", process)
        pids[label] = process.pid
    return target, dict(sorted(pids.items()))


def start_sink(procs: Processes) -> tuple[str, int]:
    """The OTLP sink; returns its base URL and pid."""
    port = free_port()
    process = procs.spawn("otlp-sink", _argv("sink", port), _env())
    url = f"http://127.0.0.1:{port}"
    wait_ready(procs, "otlp-sink", f"{url}/healthz", process)
    return url, process.pid


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.floor")
    parser.add_argument("kind", choices=("hop", "sink"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target", help="hop: the next hop's or the upstream's base URL")
    args = parser.parse_args(argv)
    app: Any = hop_app(args.target) if args.kind == "hop" else sink_app()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
