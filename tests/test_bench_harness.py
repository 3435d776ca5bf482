"""The bench's comparison points start and answer through to the fake upstream: the two-hop
floor (two bare Starlette + aiohttp hops in series) and, where node and npm are installed,
the Portkey gateway (installed on first use into tests/bench/.portkey). Real processes on
127.0.0.1; the answer's text must be the fake upstream's, streams included."""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.bench import floor, load, notes, portkey, probe, procstats
from tests.bench.run import Bench
from tests.bench.settings import Settings
from tests.bench.stack import Interlock, Processes, start_redis, start_upstream
from tests.bench.targets import Target
from tests.support.prom import scrape, value


@pytest.fixture
def procs() -> Iterator[Processes]:
    with tempfile.TemporaryDirectory(prefix="bench-harness-") as tmp:
        processes = Processes(Path(tmp))
        try:
            yield processes
        finally:
            processes.stop_all()


def test_two_hop_floor_forwards_calls_and_streams(procs: Processes) -> None:
    upstream, _ = start_upstream(procs)
    url, pids = floor.start_hops(procs, upstream, 2, "hop")
    assert sorted(pids) == ["hop1", "hop2"]
    load.validate(url, None, "floor2")  # fast + slow50 answers and one whole stream
    assert _stats(upstream)["chat_requests"] == 3  # each went through to the upstream once


def _stats(upstream: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{upstream}/stats", timeout=5) as response:
        stats: dict[str, int] = orjson.loads(response.read())
    return stats


@pytest.mark.skipif(not portkey.available(), reason="node and npm are not installed")
def test_portkey_serves_through_to_the_fake_upstream_on_loopback_only(procs: Processes) -> None:
    upstream, _ = start_upstream(procs)
    gateway = portkey.Portkey(procs, upstream)
    gateway.start()
    assert procstats.loopback_only(gateway.pids["portkey"]) == []
    load.validate(gateway.url, None, "portkey", gateway.headers, streams=False)
    assert _stats(upstream)["chat_requests"] == 2
    assert portkey.version() == portkey.PORTKEY_VERSION


def test_redis_round_trips_are_the_cores_own_count(procs: Processes) -> None:
    """The note's round trips per request come from the core's counter, not from Redis's
    command stats (which count what a Lua script runs too): a few a request, never the
    commands scripts run."""
    upstream, _ = start_upstream(procs)
    redis_url, _ = start_redis(procs)
    gateway = Interlock(procs, upstream, redis_url)
    gateway.start()
    admin = f"http://127.0.0.1:{gateway.admin_port}"
    target = Target("interlock", gateway.url, gateway.token, gateway.pids, redis_url, admin)
    load.validate(gateway.url, gateway.token, "interlock")  # the first calls load the scripts
    before = notes.redis_snapshot(target)
    requests = 20
    for _ in range(requests):
        asyncio.run(load._check_chat(gateway.url, gateway.token, "fast"))
    after = notes.redis_snapshot(target)
    trips = (after[notes.TRIPS] - before[notes.TRIPS]) / requests
    inside = sum(after[k] - before.get(k, 0) for k in after if k != notes.TRIPS) / requests
    assert 1 <= trips < inside  # scripts run more commands than the core sends
    note = notes.redis_note(before, after, requests)
    assert note.startswith(f"Redis round trips per gateway request: {trips:.2f} ")
    deadline = time.monotonic() + 10  # the ledger writes every 0.2 s
    while value(scrape(admin), "interlock_ledger_queued") and time.monotonic() < deadline:
        time.sleep(0.05)
    ledger = re.fullmatch(
        r"ledger writer after the rounds: (\d+) records written, 0 still queued in memory, "
        r"0 spilled to disk",
        notes.ledger_note(scrape(admin)),
    )
    assert ledger is not None and int(ledger.group(1)) >= requests


def test_the_probe_times_plain_calls_and_streams_with_one_client(procs: Processes) -> None:
    """tests.bench.probe: alternated calls on one connection, each read to its end (the
    upstream counts every one), a stream's first token before its end; a gateway's refusal is
    an error, never a figure."""
    upstream, _ = start_upstream(procs)
    redis_url, _ = start_redis(procs)
    gateway = Interlock(procs, upstream, redis_url)
    gateway.start()
    before = _stats(upstream)["chat_requests"]
    result = probe.run_probe(gateway.url, gateway.token, None, 5)
    assert len(result.plain_ms) == len(result.ttft_ms) == 5
    assert _stats(upstream)["chat_requests"] - before == 2 * (probe.WARMUP + 5)
    assert all(0 < value < 1000 for value in result.plain_ms + result.ttft_ms)
    summary = result.as_dict()
    assert summary["n"] == 5 and summary["ttft_p50_ms"] > 0
    with pytest.raises(probe.ProbeError, match="HTTP 401"):
        probe.run_probe(gateway.url, "not-a-token", None, 1)


def test_the_warm_up_applies_every_load_of_the_rounds_before_any_sample(procs: Processes) -> None:
    """The RSS series starts after the warm-up: each stream model at its concurrency must
    have run by then, besides plain calls (a workload first seen in round 1's stream phase
    showed as growth between the first and second samples)."""
    url, _ = start_upstream(procs)
    settings = Settings(
        duration=1,
        rounds=1,
        leak_runs=0,
        concurrency=4,
        wrk_threads=1,
        warmup=0.5,
        stream_seq={"stream20": 1, "stream64x20": 1},
        stream_conc={"stream20": 3, "stream64x20": 2},
    )
    direct = Target("direct", url, None, {})
    silent = Target("quiet", url, None, {}, streams=False)
    before = notes.upstream_stats(url)
    bench = Bench(settings, [direct, silent], load.ensure_wrk(install=False), procs.workdir)
    bench.warm_up()
    after = notes.upstream_stats(url)
    # One sequential stream and the concurrent ones per model, for the stream target only.
    assert after["include_usage_requests"] - before["include_usage_requests"] == (1 + 3) + (1 + 2)
    assert after["chat_requests"] - before["chat_requests"] > 7  # plain calls at c=1 and c=4
