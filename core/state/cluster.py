"""Redis Cluster for the lean client: one multiplexed connection per primary, routed by slot.

The core's calls each touch one slot (keys carry hash tags: core/state/redis_store.py), so a
call is a slot lookup (CRC16 of the key's tag, redis-py's own `key_slot`) and a call on the
owner's lean connection (core/state/resp.py). Chosen over redis-py's `RedisCluster` by the
A/B bench (`python -m tests.bench.cluster_ab`: CPU per call; figures in the README), since
the core sends one script call per concern per request.

What the cluster may say, and what is done:
- MOVED (a slot now lives elsewhere: a failover, a finished migration): the slot is pointed
  at the new owner, the call is sent there, and the whole map is re-read in the background.
- ASK (a slot being migrated, this key already moved): ASKING and the call on the target,
  once; the map is unchanged until the migration ends with a MOVED.
- TRYAGAIN (a multi-key call during a migration): a short pause, then again.
- A primary unreachable (killed, partitioned): the call fails as a lost connection (the
  Redis-down policy then applies to that owner alone, core/state/resilient.py) and the map is
  re-read, so once a replica is promoted the slot's calls go to it.
Redirections are bounded (`MAX_REDIRECTS`); one attempt per owner otherwise, as the single-node
client: retrying after a lost connection is the policy's decision, since a script that may
have run must not run twice.

Every node is reached with the seed URL's credentials and TLS settings (`rediss://`, AUTH or
an ACL user): a cluster's nodes share them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

import redis.exceptions
from redis.crc import key_slot

from core.state.redis_url import RedisEndpoint, parse_endpoint
from core.state.resp import RespClient

log = logging.getLogger("interlock.state")

SLOTS = 16384
MAX_REDIRECTS = 5  # MOVED / ASK / TRYAGAIN answers followed per call
TRYAGAIN_PAUSE_S = 0.02
REFRESH_EVERY_S = 0.1  # the map is re-read at most this often, however many calls fail
_NODE_FAILURES = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.ReadOnlyError,
    OSError,
)


class ClusterClient:
    def __init__(self, url: str, timeout_s: float = 1.0) -> None:
        seed = parse_endpoint(url)
        if seed.path is not None:
            raise ValueError("redis URL: a cluster is reached over TCP, not a unix socket")
        if seed.db:
            raise ValueError("redis URL: a Redis Cluster has database 0 only")
        self.seed: RedisEndpoint = seed
        self.timeout_s = seed.timeout_s or timeout_s
        self._seed_address = f"{seed.host}:{seed.port}"
        self._slots: list[str | None] = [None] * SLOTS  # slot -> owner "host:port"
        self._nodes: dict[str, RespClient] = {}
        self._refreshing: asyncio.Task[None] | None = None
        self._refreshed_at = -REFRESH_EVERY_S
        self._mapped = False  # a map was read once (until then, the first call reads it)
        self._owners = frozenset((self._seed_address,))
        self._mapping: asyncio.Task[None] | None = None  # the first read, shared

    def owner(self, key: str) -> str:
        """The address of the primary serving `key` now, as this client knows it."""
        return self._slots[key_slot(key.encode())] or self._seed_address

    def owners(self) -> frozenset[str]:
        """Every primary serving slots now (the seed's address until the map is read)."""
        return self._owners

    def _node(self, address: str) -> RespClient:
        client = self._nodes.get(address)
        if client is None:
            host, _, port = address.rpartition(":")
            endpoint = dataclasses.replace(self.seed, host=host, port=int(port))
            client = self._nodes[address] = RespClient("", self.timeout_s, endpoint)
        return client

    async def keyed(self, key: str, *args: Any, at_once: bool = False) -> Any:
        """`args` run on the owner of `key`'s slot, following the cluster's redirections."""
        if not self._mapped:
            await self._first_map()
        slot = key_slot(key.encode())
        address = self._slots[slot] or self._seed_address
        for _ in range(MAX_REDIRECTS):
            try:
                return await self._node(address).call(*args, at_once=at_once)
            except redis.exceptions.MovedError as moved:
                address = self._slots[slot] = f"{moved.host}:{moved.port}"
                self._owners = self._owners | {address}
                self.stale()
            except redis.exceptions.AskError as ask:
                return await self._node(f"{ask.host}:{ask.port}").call_asking(*args)
            except redis.exceptions.TryAgainError:
                await asyncio.sleep(TRYAGAIN_PAUSE_S)
            except _NODE_FAILURES:
                self.stale()  # a promoted replica, a slot with no owner: the map will say
                raise
        raise redis.exceptions.ClusterError("redis cluster: too many redirections")

    async def ping(self) -> bool:
        """Every primary answers: each owns slots the core's state may live in."""
        if not self._mapped:
            await self._first_map()
        owners = self._owners
        replies = await asyncio.gather(*(self._node(a).call("PING") for a in owners))
        return bool(owners) and all(reply == "PONG" for reply in replies)

    async def _first_map(self) -> None:
        """One read of the map for every call that arrives before there is one."""
        if self._mapping is None or self._mapping.done():
            self._mapping = asyncio.get_running_loop().create_task(self.refresh())
        await asyncio.shield(self._mapping)

    def stale(self) -> None:
        """Re-read the map in the background (at most one read at a time, and not too often)."""
        now = time.monotonic()
        if self._refreshing is not None or now - self._refreshed_at < REFRESH_EVERY_S:
            return
        self._refreshing = asyncio.get_running_loop().create_task(self._background())

    async def _background(self) -> None:
        try:
            await self.refresh()
        except redis.exceptions.RedisError as exc:
            log.debug("redis cluster map not refreshed: %s", type(exc).__name__)
        finally:
            self._refreshing = None

    async def refresh(self) -> None:
        """CLUSTER SLOTS from the first node that answers (known primaries, then the seed)."""
        self._refreshed_at = time.monotonic()
        candidates = [*dict.fromkeys(a for a in self._slots if a is not None)]
        candidates.append(self._seed_address)
        failure: Exception | None = None
        for address in dict.fromkeys(candidates):
            try:
                reply = await self._node(address).call("CLUSTER", "SLOTS")
            except (redis.exceptions.RedisError, OSError) as exc:
                failure = exc
                continue
            self._apply(reply, address)
            return
        raise redis.exceptions.ConnectionError(f"no redis cluster node answers: {failure}")

    def _apply(self, reply: Any, asked: str) -> None:
        """The new map; connections to nodes that own nothing any more are closed. A slot the
        reply leaves out (its primary failed, no replica promoted yet) keeps its last owner:
        its calls fail there, so the Redis-down policy blames that primary and no other."""
        slots = list(self._slots)
        for entry in reply or ():
            first, last, primary = int(entry[0]), int(entry[1]), entry[2]
            host = primary[0].decode() if isinstance(primary[0], bytes) else str(primary[0])
            address = f"{host}:{int(primary[1])}" if host and host != "?" else asked
            slots[first : last + 1] = [address] * (last - first + 1)
        self._slots, self._mapped = slots, True
        self._owners = frozenset(a for a in slots if a is not None)
        owners = self._owners | {self._seed_address}
        for address in [a for a in self._nodes if a not in owners]:
            gone = self._nodes.pop(address)
            asyncio.get_running_loop().create_task(gone.close())

    async def close(self) -> None:
        for task in (self._refreshing, self._mapping):
            if task is not None:
                task.cancel()
        nodes, self._nodes = list(self._nodes.values()), {}
        for node in nodes:
            await node.close()
