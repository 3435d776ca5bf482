"""The Redis store on a real Redis Cluster (three primaries, three replicas): every call lands
on its key's slot owner, redirections during and after a slot migration are followed, and
TLS with an ACL user reaches every node."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.state.buckets import BucketSpec
from core.state.budget_accounts import Account, BudgetCharge, BudgetLine
from core.state.redis_store import RedisStore
from core.state.resilient import ResilientStore
from shared.errors import GatewayError
from tests.support.net import free_port
from tests.support.redis_cluster import RedisClusterServer
from tests.support.redis_server import RedisServer


def tenant_keys(tenant: str) -> list[BucketSpec]:
    """A tenant's RPM and TPM buckets, as core.limits.tenant names them (one hash tag)."""
    return [
        BucketSpec(f"il:{{t:{tenant}}}:rpm", 5, 5 / 60, 1),
        BucketSpec(f"il:{{t:{tenant}}}:tpm", 500, 500 / 60, 100),
    ]


def test_calls_land_on_every_primary_and_keep_their_semantics(
    redis_cluster: RedisClusterServer,
) -> None:
    async def scenario() -> None:
        store = RedisStore(redis_cluster.url, cluster=True)
        try:
            owners = set()
            for n in range(12):
                tenant = f"spread-{n}"
                taken = [await store.take(tenant_keys(tenant)) for _ in range(6)]
                # 5 a minute: the sixth is refused, as on one node.
                assert [t.allowed for t in taken] == [True] * 5 + [False]
                owners.add(store.owner(f"il:{{t:{tenant}}}:rpm"))
            assert len(owners) == 3  # the tenants' buckets are spread over the three primaries
            await store.set("ilc:{abc}:1", b"entry", 30)
            assert await store.get_many(["ilc:{abc}:1", "il:{b:x}:open"]) == [b"entry", None]
            assert await store.claim("il:hop:n1", 30) and not await store.claim("il:hop:n1", 30)
            assert await store.get_or_lead("ilc:{q}:k", "ilc:{q}:k:lock", b"me", 5) == (None, None)
            assert await store.get_or_lead("ilc:{q}:k", "ilc:{q}:k:lock", b"you", 5) == (
                None,
                b"me",
            )
            assert (
                await store.log_append("ilc:{q}:k:log:me", [b"a", b"b"], 5, "ilc:{q}:k:lock") == 1
            )
            assert await store.log_read("ilc:{q}:k:log:me", 1) == [b"b"]
            shared = await store.share(
                [("il:{l:a}:stats", b"1"), ("il:{l:b}:stats", b"2")], "r1", 60
            )
            assert [sorted(r) for r in shared] == [["r1"], ["r1"]]
            assert await store.ping()
        finally:
            await store.close()

    asyncio.run(scenario())


def test_budgets_reserve_and_settle_in_one_slot(redis_cluster: RedisClusterServer) -> None:
    """Every budget account is hash-tagged {budgets}: one script call covers them all."""

    async def scenario() -> None:
        store = RedisStore(redis_cluster.url, cluster=True)
        try:
            accounts = [Account(f"il:{{budgets}}:b{n}:2026-12", 4e9) for n in range(3)]
            lines = [BudgetLine(a, 1000, 0, 600, 10, True) for a in accounts]
            assert (await store.budget_reserve(lines, "r1", 60)).refused == -1
            assert (await store.budget_reserve(lines, "r2", 60)).refused == 0  # 1200 > 1000
            charge = BudgetCharge("r1", 550, 10, tuple(accounts))
            settled = await store.budget_settle([charge], 60)
            assert settled == {a.key: 550 for a in accounts}
        finally:
            await store.close()

    asyncio.run(scenario())


def test_a_moved_slot_is_followed_and_remembered(redis_cluster: RedisClusterServer) -> None:
    """A slot migrated after the client read the map: the old owner answers MOVED, the call
    is served by the new one, and later calls go there directly."""
    key = "il:{t:mover}:rpm"
    admin = redis_cluster.admin()
    slot = int(admin.keyslot(key))

    async def scenario() -> None:
        store = RedisStore(redis_cluster.url, cluster=True)
        try:
            assert (await store.take([BucketSpec(key, 5, 5 / 60, 1)])).remaining == (4.0,)
            source = redis_cluster.owner(key)
            target = next(p for _, _, p in redis_cluster.ranges() if p != source)
            redis_cluster.begin_migration(slot, source, target)
            # Half-way: the key already moved, so the source answers ASK; the call follows.
            assert (await store.take([BucketSpec(key, 5, 5 / 60, 1)])).remaining[0] < 3.1
            assert store.owner(key) == f"127.0.0.1:{source}"  # ASK does not change the map
            redis_cluster.end_migration(slot, target)
            assert (await store.take([BucketSpec(key, 5, 5 / 60, 1)])).remaining[0] < 2.1
            assert store.owner(key) == f"127.0.0.1:{target}"  # MOVED does
        finally:
            await store.close()

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def secure_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServer]:
    """TLS on every port (cluster bus included) and an ACL user."""
    server = RedisClusterServer(
        Path(tmp_path_factory.mktemp("tls-cluster")), tls=True, user="gateway", password="s3cret"
    ).start()
    yield server
    server.stop()


def test_tls_and_an_acl_user_reach_every_node(secure_cluster: RedisClusterServer) -> None:
    assert secure_cluster.url.startswith("rediss://gateway:s3cret@")

    async def scenario() -> set[str]:
        store = RedisStore(secure_cluster.url, cluster=True)
        try:
            for n in range(12):
                assert (await store.take(tenant_keys(f"tls-{n}"))).allowed
            assert await store.ping()
            return {store.owner(f"il:{{t:tls-{n}}}:rpm") for n in range(12)}
        finally:
            await store.close()

    assert len(asyncio.run(scenario())) == 3


def test_a_wrong_password_is_the_redis_down_policy(secure_cluster: RedisClusterServer) -> None:
    url = secure_cluster.url.replace(":s3cret@", ":wrong@")

    async def scenario() -> tuple[bool, bool]:
        store = ResilientStore(RedisStore(url, cluster=True), fail_open=True)
        try:
            taken = await store.take(tenant_keys("locked-out"))  # per-process: served
            return taken.allowed, store.healthy
        finally:
            await store.close()

    assert asyncio.run(scenario()) == (True, False)


def test_no_node_answering_is_the_redis_down_policy() -> None:
    """The seed unreachable before any map was read: fail_open serves from this process,
    fail_closed refuses with 503, and neither crashes."""
    url = f"redis://127.0.0.1:{free_port()}/0"

    async def scenario(fail_open: bool) -> object:
        store = ResilientStore(RedisStore(url, cluster=True), fail_open=fail_open)
        try:
            taken = await asyncio.gather(
                *(store.take(tenant_keys("nobody")) for _ in range(3)), return_exceptions=True
            )
            assert not store.healthy and store.outages == 1 and not await store.ping()
            return taken[0]
        finally:
            await store.close()

    assert getattr(asyncio.run(scenario(True)), "allowed", None) is True
    refused = asyncio.run(scenario(False))
    assert isinstance(refused, GatewayError) and refused.status == 503


@pytest.fixture(scope="module")
def secure_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One node, TLS only, with an ACL user allowed the gateway's `il:` keys alone."""
    server = RedisServer(Path(tmp_path_factory.mktemp("tls-node")), tls=True).start()
    with server.admin() as admin:
        admin.execute_command("ACL", "SETUSER", "gateway", "on", ">s3cret", "~il:*", "+@all")
    yield server
    server.stop()


def test_tls_and_an_acl_user_on_one_node(secure_node: RedisServer) -> None:
    """The same URL form as for a cluster, without the switch; a key the ACL does not allow
    (NOPERM) is the Redis-down policy, never a 500."""
    url = secure_node.url.replace("rediss://", "rediss://gateway:s3cret@")

    async def scenario() -> tuple[bool, bool, bool, bool]:
        store = ResilientStore(RedisStore(url), fail_open=True)
        try:
            allowed = (await store.take(tenant_keys("acl"))).allowed
            healthy = store.healthy
            outside = (await store.take([BucketSpec("other:{x}:rpm", 5, 1, 1)])).allowed
            return allowed, healthy, outside, store.healthy
        finally:
            await store.close()

    assert asyncio.run(scenario()) == (True, True, True, False)
