"""A private Redis Cluster: three primaries and three replicas on free loopback ports.

Six `redis-server --cluster-enabled yes` processes, each in its own directory, joined by
`redis-cli --cluster create ... --cluster-replicas 1`. `cluster-node-timeout` is short (1 s)
so a killed primary's replica is promoted within a few seconds, which is what the failover
tests need. Optional: TLS on every port, cluster bus included (`tls=True`), and an ACL user
(`user`, `password`) that the gateway's URL carries (the default user keeps no password, so
the fixture's own admin connections need none).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from core.state.redis_store import RedisStore
from core.state.store import MemoryStore, Store
from tests.support.net import free_port, wait_port
from tests.support.tls_certs import issue_pki

NODE_TIMEOUT_MS = 1000
START_TIMEOUT_S = 30.0
CREATE_OPTIONS = ("--cluster-replicas", "1", "--cluster-yes")


class RedisClusterServer:
    def __init__(
        self,
        workdir: Path,
        tls: bool = False,
        user: str | None = None,
        password: str | None = None,
        nodes: int = 6,
    ) -> None:
        self.workdir = workdir
        self.tls = tls
        self.user = user
        self.password = password
        self.ports = [free_port() for _ in range(nodes)]
        # The cluster bus port, chosen too (by default port + 10000: maybe in the kernel's
        # ephemeral range, where an outgoing connection may hold it).
        self.bus_ports = {port: free_port() for port in self.ports}
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.pki = issue_pki(workdir / "tls") if tls else None

    @property
    def url(self) -> str:
        """What the gateway is configured with: one node (a seed) and the cluster switch."""
        auth = ""
        if self.password is not None:
            auth = f"{quote(self.user or '', safe='')}:{quote(self.password, safe='')}@"
        if self.pki is None:
            return f"redis://{auth}127.0.0.1:{self.ports[0]}/0"
        ca = quote(str(self.pki.ca))
        return f"rediss://{auth}127.0.0.1:{self.ports[0]}/0?ssl_ca_certs={ca}"

    @property
    def state(self) -> dict[str, object]:
        """The core's `state` config section for this cluster."""
        return {"redis_url": self.url, "cluster": True}

    def _args(self, port: int) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; .ci/run installs it")
        home = self.workdir / str(port)
        home.mkdir(parents=True, exist_ok=True)
        args = [binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(home), "--logfile", str(home / "redis.log")]
        args += ["--cluster-enabled", "yes", "--cluster-port", str(self.bus_ports[port])]
        args += ["--cluster-config-file", str(home / "nodes.conf")]
        args += ["--cluster-node-timeout", str(NODE_TIMEOUT_MS)]
        # A promoted replica takes over at once (no wait for a replication offset check).
        args += ["--cluster-replica-validity-factor", "0", "--enable-debug-command", "local"]
        # The other primaries keep serving while one's slots have no owner (as recommended
        # for the gateway: README "Redis Cluster").
        args += ["--cluster-require-full-coverage", "no"]
        # Replicas sync at once (default: a 5 s wait for more replicas to share a transfer).
        args += ["--repl-diskless-sync-delay", "0"]
        if self.pki is None:
            return [*args, "--port", str(port)]
        return [
            *args,
            *("--port", "0", "--tls-port", str(port), "--tls-cluster", "yes"),
            *("--tls-replication", "yes", "--tls-auth-clients", "no"),
            *("--tls-cert-file", str(self.pki.cert), "--tls-key-file", str(self.pki.key)),
            *("--tls-ca-cert-file", str(self.pki.ca)),
            # The cluster bus and replication connect as clients: a client-auth certificate.
            *("--tls-client-cert-file", str(self.pki.client_cert)),
            *("--tls-client-key-file", str(self.pki.client_key)),
        ]

    def _cli(self) -> list[str]:
        binary = shutil.which("redis-cli")
        if binary is None:
            raise RuntimeError("redis-cli is not installed")
        if self.pki is None:
            return [binary]
        return [binary, "--tls", "--cacert", str(self.pki.ca)]

    def start(self) -> RedisClusterServer:
        for port in self.ports:
            self.processes[port] = subprocess.Popen(
                self._args(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        for port in self.ports:
            wait_port(port)
        addresses = [f"127.0.0.1:{port}" for port in self.ports]
        subprocess.run(
            [*self._cli(), "--cluster", "create", *addresses, *CREATE_OPTIONS],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=START_TIMEOUT_S,
        )
        self.wait_ok()
        if self.password is not None:
            self._add_user()
        return self

    def node(self, port: int) -> redis.Redis:
        """A direct admin connection to one node (default user: no password)."""
        if self.pki is None:
            return redis.Redis(host="127.0.0.1", port=port)
        return redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(self.pki.ca))

    def admin(self) -> RedisCluster:
        """A cluster-aware admin client (redis-py's own), for reading what the gateway wrote."""
        live = [p for p in self.ports if self.processes[p].poll() is None]
        kwargs: dict[str, object] = {}
        if self.pki is not None:
            kwargs = {"ssl": True, "ssl_ca_certs": str(self.pki.ca)}
        return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in live], **kwargs)  # type: ignore[arg-type]

    def _add_user(self) -> None:
        """The gateway's ACL user on every node (ACLs are per node, not replicated)."""
        for port in self.ports:
            with self.node(port) as client:
                rules = ("on", f">{self.password}", "~*", "&*", "+@all")
                client.execute_command("ACL", "SETUSER", self.user or "default", *rules)

    def wait_ok(self, timeout: float = START_TIMEOUT_S) -> None:
        """Until every live node says cluster_state:ok and agrees on three primaries."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._ok(p) for p in self.ports if self.processes[p].poll() is None):
                return
            time.sleep(0.05)
        raise RuntimeError("the redis cluster did not reach cluster_state:ok")

    def _ok(self, port: int) -> bool:
        """Cluster state ok, and a replica's link to its primary up (its data in sync)."""
        try:
            with self.node(port) as client:
                info = client.execute_command("CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                if "cluster_state:ok" not in text or "cluster_size:3" not in text:
                    return False
                replication = client.info("replication")
                return bool(
                    replication.get("role") == "master"
                    or replication.get("master_link_status") == "up"
                )
        except redis.RedisError:
            return False

    def ranges(self) -> list[tuple[int, int, int]]:
        """(first slot, last slot, primary port) for every range, as a live node says now."""
        with self.node(self._live()) as client:
            slots = client.execute_command("CLUSTER", "SLOTS")
        return [(int(s[0]), int(s[1]), int(s[2][1])) for s in slots]

    def owner(self, key: str) -> int:
        """The port of the primary that owns `key`'s slot now."""
        with self.node(self._live()) as client:
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
        for first, last, port in self.ranges():
            if first <= slot <= last:
                return port
        raise RuntimeError(f"no primary owns slot {slot}")

    def node_id(self, port: int) -> str:
        with self.node(port) as client:
            reply = client.execute_command("CLUSTER", "MYID")
        return reply.decode() if isinstance(reply, bytes) else str(reply)

    def begin_migration(self, slot: int, source: int, target: int) -> None:
        """`slot` half-way from `source` to `target`: both in MIGRATING/IMPORTING state and its
        keys already moved, so `source` answers ASK for them."""
        with self.node(target) as client:
            client.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", self.node_id(source))
        with self.node(source) as client:
            client.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", self.node_id(target))
            keys = client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
            if keys:
                client.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)

    def end_migration(self, slot: int, target: int) -> None:
        """`slot` now belongs to `target`, as every primary is told (the others answer MOVED)."""
        target_id = self.node_id(target)
        for _, _, port in self.ranges():
            with self.node(port) as client:
                client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)

    def _live(self) -> int:
        return next(p for p in self.ports if self.processes[p].poll() is None)

    def kill(self, port: int) -> None:
        """SIGKILL one node (no shutdown, no goodbye to the cluster)."""
        process = self.processes[port]
        process.kill()
        process.wait(10)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


class SharedState:
    """What a test of several cores shares: the `state` config section, and an admin client
    (redis-py's: a plain one for one node, the cluster-aware one for a cluster)."""

    def __init__(self, state: dict[str, object], cluster: RedisClusterServer | None = None) -> None:
        self.state = state
        self.cluster = cluster

    def admin(self) -> redis.Redis | RedisCluster:
        if self.cluster is not None:
            return self.cluster.admin()
        return redis.Redis.from_url(str(self.state["redis_url"]))

    def keys(self, pattern: str) -> list[bytes]:
        """Keys matching `pattern` on every primary."""
        admin = self.admin()
        if isinstance(admin, RedisCluster):
            return list(admin.scan_iter(pattern, target_nodes=RedisCluster.PRIMARIES))
        return list(admin.scan_iter(pattern))


def store_of(kind: str, request: pytest.FixtureRequest) -> Store:
    """A fresh store of `kind` ("memory", "redis": one node, "cluster": a Redis Cluster), for
    tests parametrized over the three; the servers are the session's fixtures."""
    if kind == "memory":
        return MemoryStore()
    if kind == "redis":
        return RedisStore(request.getfixturevalue("redis_url"))
    cluster: RedisClusterServer = request.getfixturevalue("redis_cluster")
    return RedisStore(cluster.url, cluster=True)
