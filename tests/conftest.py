"""Session fixtures: fake providers, a private Redis, and the running edge + core."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import pytest
import redis

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_azure import FakeAzure
from tests.support.fake_bedrock import API_KEY as BEDROCK_API_KEY
from tests.support.fake_bedrock import FakeBedrock
from tests.support.fake_faults import FakeFaults
from tests.support.fake_gemini import FakeGemini
from tests.support.fake_openai import FakeOpenAI
from tests.support.moto_server import MotoServer
from tests.support.postgres_server import PostgresServer
from tests.support.redis_cluster import RedisClusterServer, SharedState
from tests.support.redis_server import RedisServer
from tests.support.stack import Stack


class _Server(Protocol):
    def start(self) -> object: ...

    def stop(self) -> None: ...


T = TypeVar("T", bound=_Server)


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


def _running(server: T) -> Iterator[T]:
    """A fake server started for the fixture's scope, stopped after it."""
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def faults() -> Iterator[FakeFaults]:
    """The fault-injecting fake (tests/support/fake_faults.py), one per test module."""
    yield from _running(FakeFaults())


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    """A fake OpenAI of the test module's own (its counters and scripts are the module's)."""
    yield from _running(FakeOpenAI())


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeAnthropic]:
    """A fake Anthropic of the test module's own."""
    yield from _running(FakeAnthropic())


@pytest.fixture(scope="module")
def gemini() -> Iterator[FakeGemini]:
    """A fake Gemini (AI Studio and Vertex AI) of the test module's own."""
    yield from _running(FakeGemini())


@pytest.fixture(scope="module")
def bedrock() -> Iterator[FakeBedrock]:
    """A fake Bedrock (SigV4 with the fake's credentials, or its API_KEY) of the module's own."""
    yield from _running(FakeBedrock(api_keys=(BEDROCK_API_KEY,)))


@pytest.fixture(scope="module")
def azure() -> Iterator[FakeAzure]:
    """A fake Azure OpenAI of the test module's own."""
    yield from _running(FakeAzure())


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    """A plain redis-py client of the session's Redis, for reading what a test left there."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServer]:
    """A private Redis Cluster for the session (three primaries, three replicas: about 2 s).
    Tests that kill nodes start their own."""
    yield from _running(RedisClusterServer(tmp_path_factory.mktemp("redis-cluster")))


@pytest.fixture(scope="session", params=["redis", "cluster"])
def shared_state(request: pytest.FixtureRequest, redis_url: str) -> SharedState:
    """The cores' shared state, one Redis node or a Redis Cluster: a test that takes it runs
    against both (its `state` is the config section, `admin()` a client for checking)."""
    if request.param == "redis":
        return SharedState({"redis_url": redis_url})
    cluster: RedisClusterServer = request.getfixturevalue("redis_cluster")
    return SharedState(cluster.state, cluster)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A private PostgreSQL for the session; `postgres.database()` gives a test its own DB."""
    server = PostgresServer().start()
    yield server
    server.remove()


def gateway_overrides(fake: FakeOpenAI, closed_port: int) -> dict[str, object]:
    return {
        "providers": {
            "mock": {"kind": "mock", "allow_any_model": True},
            "fake": {
                "kind": "openai",
                "base_url": fake.base_url,
                "api_key": "sk-test-upstream",
                "allow_any_model": True,
            },
            "down": {
                "kind": "openai",
                "base_url": f"http://127.0.0.1:{closed_port}/v1",
                "api_key": "sk-down",
            },
        },
        "models": {
            "mock-1": {"provider": "mock", "model": "mock-1"},
            "gpt-fake": {"provider": "fake", "model": "gpt-fake"},
            "resilient": {
                "targets": [
                    {"provider": "down", "model": "gpt-fake"},
                    {"provider": "fake", "model": "fail-500"},
                    {"provider": "fake", "model": "gpt-fake"},
                ]
            },
            "no-fallback": {"provider": "fake", "model": "fail-500"},
        },
        "aliases": {"fast": "mock-1"},
    }


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, fake_openai: FakeOpenAI) -> Iterator[Stack]:
    from tests.support.net import free_port

    workdir: Path = tmp_path_factory.mktemp("stack")
    running = Stack(workdir, gateway_overrides(fake_openai, free_port())).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    """moto in server mode (a local Secrets Manager) for the session: `moto.env` points a
    process's standard AWS chain at it; `moto.client()` sets secrets up and rotates them."""
    yield from _running(MotoServer())
