"""What the bench measures, started on demand: direct, the floors, interlock plain and with
every feature on, Portkey, LiteLLM. Each becomes a Target (where to send requests, which
headers, which processes' CPU and memory it costs)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bench import coldstart, features, floor, procstats
from tests.bench import litellm as litellm_proxy
from tests.bench import portkey as portkey_gw
from tests.bench.stack import HarnessError, Interlock, Processes, edge_import_ms, start_redis


@dataclass
class Target:
    """One thing to measure: where to send requests and which processes it costs."""

    name: str
    url: str
    token: str | None
    pids: dict[str, int]
    redis_url: str | None = None
    admin_url: str | None = None  # the core's admin listener (its /metrics), interlock only
    headers: dict[str, str] = field(default_factory=dict)
    streams: bool = True  # measured in the stream phases
    unique: bool = False  # a new prompt per request (response-cache misses)
    script: Path = Path()
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class Started:
    targets: list[Target]
    edge_import: dict[str, Any] | None = None
    cold_start: dict[str, Any] | None = None
    versions: dict[str, str | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    redis_url: str | None = None
    pg_url: str | None = None
    sink_url: str | None = None


def check_loopback(name: str, pid: int) -> None:
    foreign = procstats.loopback_only(pid)
    if foreign:
        raise HarnessError(f"{name} holds non-loopback TCP sockets: {foreign}")


def ledger_rows(url: str) -> int:
    """Records the full-feature stack wrote to its PostgreSQL ledger (proof it was in use)."""
    import asyncpg

    async def count() -> int:
        con = await asyncpg.connect(url, timeout=5)
        try:
            return int(await con.fetchval("SELECT count(*) FROM ledger_records"))
        finally:
            await con.close()

    return asyncio.run(count())


def postgres(procs: Processes) -> str:
    """The tests' private PostgreSQL (stopped with the other processes); a fresh database."""
    from tests.support.postgres_server import PostgresServer

    try:
        server = PostgresServer().start()
    except (OSError, RuntimeError) as exc:
        raise HarnessError(
            f"PostgreSQL for the full-feature profile did not start: {exc}"
        ) from None
    procs.cleanups.append(server.remove)
    return server.database()


def _interlocks(
    names: list[str], run: Started, procs: Processes, upstream: str, import_runs: int
) -> None:
    if "interlock" in names or "interlock-full" in names:
        run.redis_url, redis_pid = start_redis(procs)
    if "interlock" in names:
        gateway = Interlock(procs, upstream, run.redis_url or "")
        print("measuring the edge's import time (fresh interpreters) ...", flush=True)
        run.edge_import = edge_import_ms(gateway.env, import_runs)
        run.cold_start = coldstart.measure(gateway.env, import_runs)
        gateway.start()
        pids = {**gateway.pids, "redis": redis_pid}
        admin = f"http://127.0.0.1:{gateway.admin_port}"
        run.targets.append(
            Target("interlock", gateway.url, gateway.token, pids, run.redis_url, admin)
        )
    if "interlock-full" in names:
        run.pg_url = postgres(procs)
        run.sink_url, _ = floor.start_sink(procs)
        overrides = features.full_overrides(run.pg_url, run.sink_url)
        print("starting interlock with every feature on ...", flush=True)
        # Its own Redis: each stack's round trips per request stay countable.
        full_redis, full_redis_pid = start_redis(procs)
        full, _ = features.start_stack(procs, "full", upstream, full_redis, overrides)
        pids = {**full.pids, "redis": full_redis_pid}
        run.targets.append(
            Target("interlock-full", full.url, full.token, pids, None, streams=False, unique=True)
        )
        run.notes.append(
            "interlock-full: the plain config plus the ledger in PostgreSQL, the response cache "
            "(unique prompts: every lookup misses), tracing at 1% to a loopback OTLP sink; "
            "streams are measured on the plain stack only"
        )


def start(
    names: list[str], procs: Processes, upstream: tuple[str, int], import_runs: int
) -> Started:
    """Starts what `names` needs, in the order of tests.bench.report.TARGET_NAMES."""
    upstream_url, upstream_pid = upstream
    run = Started([], versions={"litellm": None, "portkey": None})
    if "direct" in names:
        run.targets.append(Target("direct", upstream_url, None, {"upstream": upstream_pid}))
    for name, hops in (("floor1", 1), ("floor2", 2)):
        if name in names:
            url, pids = floor.start_hops(procs, upstream_url, hops, "hop")
            run.targets.append(Target(name, url, None, pids))
    _interlocks(names, run, procs, upstream_url, import_runs)
    if "portkey" in names:
        gateway = portkey_gw.Portkey(procs, upstream_url)
        print("starting the Portkey gateway ...", flush=True)
        gateway.start()
        run.versions["portkey"] = portkey_gw.version()
        run.versions["node"] = portkey_gw.node_version()
        check_loopback("portkey", gateway.pids["portkey"])
        target = Target("portkey", gateway.url, None, gateway.pids, headers=gateway.headers)
        broken = _stream_error(target)
        if broken:
            target.streams = False
            run.notes.append(
                f"Portkey streams not measured: one stream through it failed ({broken[:200]})"
            )
        run.targets.append(target)
        run.notes.append(portkey_gw.DESCRIPTION)
    if "litellm" in names:
        python = litellm_proxy.ensure_venv()
        run.versions["litellm"] = litellm_proxy.version(python)
        proxy = litellm_proxy.LiteLLM(procs, python, upstream_url)
        print("starting LiteLLM proxy ...", flush=True)
        proxy.start()
        check_loopback("LiteLLM", proxy.pids["litellm"])
        run.targets.append(Target("litellm", proxy.url, proxy.token, proxy.pids))
    return run


def _stream_error(target: Target) -> str | None:
    from tests.bench import load

    with contextlib.suppress(Exception):
        return load.stream_works(target.url, target.token, target.headers)
    return "the stream client raised"


def ladder(
    wrk: str, quick: bool, procs: Processes, upstream: str, run: Started
) -> list[dict[str, Any]]:
    """The feature ladder (tests.bench.features) on its own stacks, after the main rounds."""
    if run.pg_url is None:
        run.pg_url = postgres(procs)
    if run.sink_url is None:
        run.sink_url = floor.start_sink(procs)[0]
    if run.redis_url is None:
        run.redis_url = start_redis(procs)[0]
    steps = []
    print("starting the feature ladder's stacks ...", flush=True)
    for name, overrides, redis in features.ladder(run.pg_url, run.sink_url):
        url = run.redis_url if redis else None
        stack, script = features.start_stack(procs, f"ladder-{name}", upstream, url, overrides)
        steps.append(features.Step(name, stack, script))
    rounds, burst = (2, 1.0) if quick else (8, 2.0)
    features.measure(wrk, steps, rounds, burst, lambda text: print(f"  {text}", flush=True))
    procs.check_alive()
    return features.summarize(steps)
