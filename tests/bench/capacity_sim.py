"""The capacity model checked by a scaled-down deployment (issue 19): several core processes
behind one edge, sharing a local Redis Cluster (three primaries, three replicas), against the
zero-latency fake upstream.

The model says a deployment scales out linearly: a core serves 1000 / (its CPU ms per request)
requests per CPU-second however many run beside it, and each request makes the same Redis
round trips. So the simulation measures one core on the cluster first, then `cores` of them
behind one edge in the same run, and compares: requests per core CPU-second of request work
(the cores' CPU less their background work, measured idle: at the paced rate it is a share a
saturated core would not show), and Redis round trips per request, each within `TOLERANCE` of
the one-core prediction. (The prediction comes
from the same run because CPU speed differs between machines and hours; the committed inputs
are reported beside it.)
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from tests.bench import load
from tests.bench import stack as bs
from tests.bench.capacity_model import Inputs, predicted_throughput_per_core
from tests.bench.procstats import cpu_seconds
from tests.support.net import free_port
from tests.support.prom import scrape, value
from tests.support.redis_cluster import RedisClusterServer

TOLERANCE = 0.2
# Each core gets CONNECTIONS connections, each pausing PAUSE_MS between requests: about 300
# requests/s per core, far below saturation, so the 2-vCPU bench machine is not
# oversubscribed (several cores, an edge, six Redis nodes and the load generator share it)
# and CPU per request measures work, not preemption.
CONNECTIONS = 4
PAUSE_MS = 10


class Fleet:
    """One edge and `cores` cores on a Redis Cluster, all with the bench's plain config."""

    def __init__(self, procs: bs.Processes, upstream: str, cluster: RedisClusterServer) -> None:
        self.procs = procs
        self.base = bs.Interlock(procs, upstream, cluster.url)
        raw = yaml.safe_load(self.base.config_path.read_text(encoding="utf-8"))
        raw["state"] = {"redis_url": cluster.url, "cluster": True}
        self.raw = raw
        self.cores: list[tuple[int, int]] = []  # (pid, admin port)

    def start(self, cores: int) -> None:
        urls = []
        for number in range(cores):
            port, admin = free_port(), free_port()
            raw = {**self.raw, "core": {**self.raw["core"], "port": port, "admin_port": admin}}
            raw["state_dir"] = str(self.procs.workdir / f"state-{number}")
            path = self.procs.workdir / f"core-{number}.yaml"
            path.write_text(yaml.safe_dump(raw), encoding="utf-8")
            env = {**self.base.env, "INTERLOCK_CONFIG": str(path)}
            core = self.procs.spawn(f"core-{number}", bs.server_argv("core", port), env)
            bs.wait_ready(self.procs, "core", f"http://127.0.0.1:{admin}/readyz", core)
            self.cores.append((core.pid, admin))
            urls.append(f"http://127.0.0.1:{port}")
        edge_raw = {**self.raw, "edge": {**self.raw["edge"], "pools": {"default": urls}}}
        self.base.config_path.write_text(yaml.safe_dump(edge_raw), encoding="utf-8")
        edge = self.procs.spawn("edge", bs.server_argv("edge", self.base.edge_port), self.base.env)
        bs.wait_ready(self.procs, "edge", f"{self.base.url}/healthz", edge)

    def counters(self) -> tuple[float, float]:
        """The cores' CPU seconds and Redis round trips so far."""
        cpu = sum(cpu_seconds(pid) for pid, _ in self.cores)
        trips = 0.0
        for _, admin in self.cores:
            found = scrape(f"http://127.0.0.1:{admin}")
            trips += value(found, "interlock_redis_commands_total") or 0.0
        return cpu, trips


def _idle_cpu_per_s(fleet: Fleet, seconds: float = 2.0) -> float:
    """The fleet's cores' CPU per second with no requests: their background work (syncs of
    breakers, estimates and budgets, the ledger's writer), paid per core, not per request."""
    cpu, _ = fleet.counters()
    time.sleep(seconds)
    return (fleet.counters()[0] - cpu) / seconds


def _burst(
    fleet: Fleet, wrk: str, script: Path, seconds: float, idle: float
) -> tuple[float, float]:
    """One paced wrk burst: requests per core CPU-second of request work (the cores' CPU less
    their background work over the burst), Redis round trips per request."""
    cpu, trips = fleet.counters()
    started = time.monotonic()
    cores = len(fleet.cores)
    result = load.run_wrk(wrk, fleet.base.url, script, CONNECTIONS * cores, seconds)
    if result.errors:
        raise bs.HarnessError(f"{result.errors} of {result.requests} requests failed")
    time.sleep(0.3)
    cpu2, trips2 = fleet.counters()
    work = cpu2 - cpu - idle * (time.monotonic() - started)
    n = max(1, result.requests)
    return n / max(work, 1e-3), (trips2 - trips) / n


def _fleet(
    procs: bs.Processes, upstream: str, cluster: RedisClusterServer, cores: int
) -> tuple[Fleet, Path]:
    workdir = procs.workdir / f"fleet-{cores}"
    workdir.mkdir()
    own = bs.Processes(workdir)
    fleet = Fleet(own, upstream, cluster)
    try:
        fleet.start(cores)
    finally:
        procs.children += own.children
    script = load.write_script(
        workdir / "chat.lua", load.chat_body("fast"), fleet.base.token, False
    )
    with script.open("a", encoding="utf-8") as lua:
        lua.write(f"\nfunction delay() return {PAUSE_MS} end\n")
    return fleet, script


def simulate(
    inputs: Inputs, cores: int = 3, seconds: float = 2.0, rounds: int = 6
) -> dict[str, Any]:
    """A one-core fleet and a `cores` fleet side by side on one Redis Cluster, driven in turn
    (the order flips every round, so drift hits both alike); medians; the verdicts."""
    workdir = Path(tempfile.mkdtemp(prefix="capacity-sim-"))
    procs = bs.Processes(workdir)
    cluster = RedisClusterServer(workdir / "cluster").start()
    try:
        upstream, _ = bs.start_upstream(procs)
        fleets = [_fleet(procs, upstream, cluster, n) for n in (1, cores)]
        wrk = load.ensure_wrk()
        samples: list[list[tuple[float, float]]] = [[], []]
        for fleet, script in fleets:
            load.run_wrk(wrk, fleet.base.url, script, 10, 1)  # warm-up
        idle = [_idle_cpu_per_s(fleet) for fleet, _ in fleets]
        for number in range(rounds):
            order = [0, 1] if number % 2 == 0 else [1, 0]
            for i in order:
                fleet, script = fleets[i]
                samples[i].append(_burst(fleet, wrk, script, seconds, idle[i]))
    finally:
        procs.stop_all()
        cluster.stop()
    one, many = (
        (statistics.median(s[0] for s in runs), statistics.median(s[1] for s in runs))
        for runs in samples
    )
    throughput, trips = many[0] / one[0], many[1] / max(one[1], 1e-9)
    return {
        "cores": cores,
        "one_core": {"per_core_cpu_s": round(one[0], 1), "round_trips": round(one[1], 3)},
        "fleet": {"per_core_cpu_s": round(many[0], 1), "round_trips": round(many[1], 3)},
        "throughput_per_core_ratio": round(throughput, 3),
        "round_trips_ratio": round(trips, 3),
        "committed_prediction_per_core_cpu_s": round(
            predicted_throughput_per_core(inputs.profile("plain")), 1
        ),
        "within_tolerance": abs(throughput - 1) <= TOLERANCE and abs(trips - 1) <= TOLERANCE,
    }
