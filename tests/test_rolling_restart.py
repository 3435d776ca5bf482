"""A rolling restart of the cores under load is invisible to clients: two cores behind one
edge, 20 concurrent clients, each core stopped with SIGTERM and started again, twice over.

What makes it so: a draining core finishes what it has (uvicorn), closes idle keep-alive
connections and answers `connection: close`; anything the edge sends that the core never
acknowledged (a pooled connection the core was closing, a refused connect) goes to the other
replica, which is safe because the core cannot have acted on it (edge/corecall.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.support import hop_client, raw, sockets
from tests.support.net import free_port, wait_http
from tests.support.stack import Cluster, Stack

CLIENTS = 20


def restart_core(cluster: Cluster, index: int) -> None:
    """SIGTERM one core, wait for it to drain and exit, start it again on the same ports."""
    port, admin = cluster.core_ports[index], cluster.core_admin_ports[index]
    old = next(p for p in cluster.processes if f"--port {port} " in " ".join(map(str, p.args)))
    old.terminate()
    cluster.wait_exit(old)
    cluster.processes.remove(old)
    new = cluster._spawn("core", port, f"core{index}", admin)
    wait_http(f"http://127.0.0.1:{admin}/readyz", process=new)


def test_rolling_restarts_under_load_give_no_client_errors(tmp_path: Path) -> None:
    overrides = {
        "providers": {
            "mock": {"kind": "mock", "allow_any_model": True, "options": {"delay_ms": 20}}
        },
    }
    cluster = Cluster(tmp_path, overrides, edges=1).start()
    outcomes: Counter[str] = Counter()
    stop = threading.Event()

    def client(i: int) -> None:
        body: dict[str, object] = {
            "model": "mock-1",
            "messages": [{"role": "user", "content": "hi"}],
        }
        if i % 2:
            body["stream"] = True
        while not stop.is_set():
            try:
                response = raw.post(
                    f"{cluster.edge_url}/v1/chat/completions", body, cluster.token()
                )
                ok = response.status == 200 and (not i % 2 or b"data: [DONE]" in response.body)
                outcomes["ok" if ok else f"{response.status} {response.body[:200]!r}"] += 1
            except OSError as exc:
                outcomes[f"client error {exc!r}"] += 1

    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            try:
                for i in range(CLIENTS):
                    pool.submit(client, i)
                time.sleep(1)
                for _ in range(2):
                    for index in (0, 1):
                        restart_core(cluster, index)
                        time.sleep(1)
            finally:
                stop.set()  # before the pool waits for its clients, whatever happened
    finally:
        stop.set()
        cluster.stop()
    assert outcomes["ok"] > 200
    assert set(outcomes) == {"ok"}, outcomes


class Dropper:
    """A core that is going away: accepts each connection and closes it without reading a
    byte (a connection still in the listen backlog when a core closes its listener ends the
    same way)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.dropped = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return  # closed by the test
            connection.close()
            self.dropped += 1


def test_a_connection_dropped_before_the_core_acknowledged_goes_to_the_other_replica(
    tmp_path: Path,
) -> None:
    dropper = Dropper()
    core_port = free_port()
    pools = {"default": [f"http://127.0.0.1:{dropper.port}", f"http://127.0.0.1:{core_port}"]}
    stack = Stack(tmp_path, {"edge": {"pools": pools}}, core_port=core_port).start()
    try:
        body = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}
        statuses = Counter(
            raw.post(f"{stack.edge_url}/v1/chat/completions", body, stack.token()).status
            for _ in range(10)
        )
    finally:
        stack.stop()
        dropper.sock.close()
    assert dropper.dropped > 0  # round robin sent some requests to the dropping replica first
    assert statuses == {200: 10}


def _direct_request(stack: Stack, sock: socket.socket) -> None:
    headers, data = hop_client.signed(
        stack.env["INTERLOCK_HOP_SECRET"],
        {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]},
    )
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: core\r\ncontent-type: application/json\r\n"
        + f"{head}content-length: {len(data)}\r\n\r\n".encode()
        + data
    )


def test_a_draining_core_closes_idle_connections_and_says_connection_close(
    tmp_path: Path,
) -> None:
    """On SIGTERM the core closes its idle keep-alive connections at once (nobody can send on
    them any more) and answers a request in flight with `connection: close`."""
    overrides = {
        "providers": {
            "mock": {"kind": "mock", "allow_any_model": True, "options": {"delay_ms": 1500}}
        }
    }
    stack = Stack(tmp_path, overrides).start()
    try:
        idle = sockets.connect(stack.core_port)
        _direct_request(stack, idle)
        status, headers, _ = sockets.read_response(idle)
        assert status == 200 and headers.get("connection") != "close"  # kept alive
        busy = sockets.connect(stack.core_port)
        _direct_request(stack, busy)
        time.sleep(0.5)  # in flight in the core
        stack.processes[0].terminate()  # the core (spawned first)
        assert sockets.wait_outcome(idle, 3).closed
        outcome = sockets.wait_outcome(busy, 10)
        assert outcome.status == 200 and outcome.headers.get("connection") == "close"
    finally:
        stack.stop()
