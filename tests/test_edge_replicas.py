"""A hung core replica must not blackhole traffic: the edge notices a replica that does not
acknowledge requests (edge.core_ack_timeout), sends those requests to the other replica (it
cannot have acted on them: their body was never sent), rests the replica, and probes it back.
Plus the outlier detector's own rules, on a fake clock."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from edge.replicas import ReplicaHealth
from tests.support import raw
from tests.support.stack import Cluster

A, B = "http://a", "http://b"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def health(clock: Clock) -> ReplicaHealth:
    return ReplicaHealth([A, B], 2, eject_base_s=10, eject_max_s=25, probe_window_s=3, clock=clock)


def test_a_replica_failing_in_a_row_rests_and_one_request_probes_it_back() -> None:
    clock = Clock()
    replicas = health(clock)
    replicas.failed(A)
    assert replicas.choose([A, B]) == [A, B]  # one failure is not a pattern
    replicas.failed(A)
    assert replicas.choose([A, B]) == [B, A] and replicas.resting() == [A]  # A: last resort
    clock.now += 10
    assert replicas.choose([A, B]) == [A, B]  # rest over: this request is the probe...
    assert replicas.choose([A, B]) == [B, A]  # ...and no other request probes meanwhile
    replicas.succeeded(A)
    assert replicas.choose([A, B]) == [A, B] and replicas.resting() == []


def test_rest_doubles_while_probes_fail_up_to_the_cap_and_a_success_resets_it() -> None:
    clock = Clock()
    replicas = health(clock)
    replicas.failed(A)
    replicas.failed(A)
    rests = []
    for _ in range(3):
        started = clock.now
        while replicas.choose([A, B]) == [B, A]:
            clock.now += 1
        rests.append(clock.now - started)
        replicas.failed(A)  # the probe failed
    assert rests == [10, 20, 25]
    replicas.succeeded(A)
    replicas.failed(A)
    replicas.failed(A)
    started = clock.now
    while replicas.choose([A, B]) == [B, A]:
        clock.now += 1
    assert clock.now - started == 10


def test_requests_in_flight_when_it_was_rested_do_not_lengthen_the_rest() -> None:
    clock = Clock()
    replicas = health(clock)
    for _ in range(8):  # eight concurrent requests time out on a stopped replica together
        replicas.failed(A)
    clock.now += 10
    assert replicas.choose([A, B]) == [A, B]  # the first rest, not 10 * 2**6 capped at 25


def test_a_probe_that_never_reports_lets_another_request_probe() -> None:
    clock = Clock()
    replicas = health(clock)
    replicas.failed(A)
    replicas.failed(A)
    clock.now += 10
    assert A in replicas.choose([A, B])  # taken as a probe; its client leaves, no report
    clock.now += 3
    assert A in replicas.choose([A, B])


def test_when_every_replica_rests_all_are_still_tried_soonest_back_first() -> None:
    clock = Clock()
    replicas = health(clock)
    for url in (B, B, A, A):
        replicas.failed(url)
        clock.now += 1
    assert replicas.choose([A, B]) == [B, A]


# End to end: two real cores, one edge, one core stopped with SIGSTOP.

ACK_TIMEOUT_S = 1.0
REST_S = 2.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    edge = {
        "core_ack_timeout": f"{ACK_TIMEOUT_S}s",
        "replica_eject_after": 2,
        "replica_eject_base": f"{REST_S}s",
        "replica_eject_max": f"{REST_S}s",
    }
    running = Cluster(Path(tmp_path_factory.mktemp("replicas")), {"edge": edge}, edges=1).start()
    yield running
    for process in running.processes:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)  # a stopped core would ignore SIGTERM
    running.stop()


def core_process(cluster: Cluster, index: int) -> subprocess.Popen[bytes]:
    return cluster.processes[index]  # cores are spawned first, in order


def call(cluster: Cluster, i: int) -> tuple[raw.RawResponse, float]:
    """One request (every other one streamed) and the seconds it took."""
    body = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}
    if i % 2:
        body["stream"] = True
    started = time.monotonic()
    response = raw.request(
        "POST",
        f"{cluster.edge_url}/v1/chat/completions",
        body,
        {"authorization": f"Bearer {cluster.token()}"},
        timeout=20,  # far beyond the bound below; the old edge waited for edge.core_timeout
    )
    return response, time.monotonic() - started


def served_by(cluster: Cluster, index: int, response: raw.RawResponse) -> bool:
    """Whether that core wrote the usage line of this response's request."""
    return f'"request_id":"{response.headers["x-request-id"]}"' in cluster.core_log(index)


def test_a_stopped_replica_is_routed_around_then_probed_back(cluster: Cluster) -> None:
    with ThreadPoolExecutor(4) as pool:
        assert {r.status for r, _ in pool.map(lambda i: call(cluster, i), range(8))} == {200}
    stopped = core_process(cluster, 0)
    os.kill(stopped.pid, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: call(cluster, i), range(24)))
        assert [response.status for response, _ in results] == [200] * 24
        assert all(b"data: [DONE]" in response.body for response, _ in results[1::2])
        # At worst one ack timeout on the stopped replica, then the other one; generous margin
        # for a loaded machine, far below the 20 s the old edge would have hung.
        assert max(elapsed for _, elapsed in results) < ACK_TIMEOUT_S + 6
    finally:
        os.kill(stopped.pid, signal.SIGCONT)
    # Probed back after its rest, and used again: some later request's usage line is core0's.
    deadline = time.monotonic() + 20
    later: list[raw.RawResponse] = []
    while not any(served_by(cluster, 0, response) for response in later[-10:]):
        assert time.monotonic() < deadline, "the resumed replica was never used again"
        later.append(call(cluster, 0)[0])
        assert later[-1].status == 200
        time.sleep(0.2)
