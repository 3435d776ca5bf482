"""Two cores and an edge on a Redis Cluster; the primary holding one tenant's buckets is
killed (SIGKILL) while both tenants send well past their RPM. The other tenant's primary never
failed, so its limit holds as on one node; the victim's holds within the documented outage
bound (README "Resilience and limits", Redis down: each core's local buckets hold
1/`replicas` of the limit); each core counts exactly one outage and is back on Redis (the
promoted replica) without a restart."""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support import raw
from tests.support.prom import scrape, value
from tests.support.redis_cluster import RedisClusterServer
from tests.support.stack import Cluster

RPM = 600  # 10 a second
BURST = 0.1
CAPACITY = math.ceil(RPM * BURST)
RUN_AFTER_FAILOVER_S = 3.0


@pytest.fixture
def redis_nodes(tmp_path: Path) -> Iterator[RedisClusterServer]:
    server = RedisClusterServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def cores(tmp_path: Path, redis_nodes: RedisClusterServer) -> Iterator[Cluster]:
    overrides = {
        "state": {**redis_nodes.state, "on_redis_down": "fail_open", "replicas": 2},
        "limits": {"tiers": {"metered": {"rpm": RPM, "burst": BURST}}},
        "providers": {"mock": {"kind": "mock", "allow_any_model": True}},
        "models": {"m": {"provider": "mock", "model": "mock-fast"}},
    }
    running = Cluster(tmp_path / "stack", overrides, cores=2, edges=1).start()
    yield running
    running.stop()


def tenants(redis_nodes: RedisClusterServer) -> tuple[str, str, int]:
    """A victim, a bystander on another primary, and the victim's primary."""
    dead = redis_nodes.owner("il:{t:victim}:rpm")
    bystander = next(
        f"by-{n}" for n in itertools.count() if redis_nodes.owner(f"il:{{t:by-{n}}}:rpm") != dead
    )
    return "victim", bystander, dead


def test_a_killed_primary_keeps_the_limits(cores: Cluster, redis_nodes: RedisClusterServer) -> None:
    victim, bystander, dead = tenants(redis_nodes)
    tokens = {t: cores.token(tenant=t, tier="metered") for t in (victim, bystander)}
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    url = f"{cores.edge_urls[0]}/v1/chat/completions"
    stop = threading.Event()

    def send(tenant: str) -> Counter[int]:
        seen: Counter[int] = Counter()
        while not stop.is_set():
            seen[raw.post(url, body, tokens[tenant]).status] += 1
        return seen

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        running = [pool.submit(send, t) for t in (victim, bystander) for _ in range(4)]
        time.sleep(1.0)
        redis_nodes.kill(dead)
        deadline = time.monotonic() + 15
        while redis_nodes.owner("il:{t:victim}:rpm") == dead and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(RUN_AFTER_FAILOVER_S)
        stop.set()
        statuses = [future.result() for future in running]
    elapsed = time.monotonic() - started
    served = {t: sum(s[200] for s in statuses[i * 4 : i * 4 + 4]) for i, t in enumerate(tokens)}
    others = {code for s in statuses for code in s} - {200, 429}
    assert not others, others  # fail_open: no 5xx, ever
    refill = RPM / 60 * elapsed
    assert served[bystander] <= CAPACITY + refill + 1, served  # as on one node
    assert served[bystander] >= CAPACITY + refill * 0.5, served  # and really driven
    assert served[victim] <= 2 * (CAPACITY + refill) + 1, served  # the outage bound
    for port in cores.core_admin_ports:
        metrics = scrape(f"http://127.0.0.1:{port}")
        assert value(metrics, "interlock_redis_outages_total") == 1
        assert value(metrics, "interlock_redis_up") == 1
