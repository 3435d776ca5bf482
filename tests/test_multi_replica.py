"""Two cores and two edges sharing one real Redis (then a Redis Cluster), driven concurrently
past a provider key's RPM and TPM and a tenant's RPM: what the fake upstream receives never
exceeds the limits by more than the limit plus what refills while the test runs (and, for
tokens, one in-flight reservation's estimate error per replica); see each test's `bound`."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support import hop_client, raw
from tests.support.fake_openai import FakeOpenAI
from tests.support.prom import scrape, value
from tests.support.redis_cluster import SharedState
from tests.support.stack import Cluster

KEY_RPM = 30
KEY_TPM = 600
TENANT_RPM = 25
USAGE_TOKENS = 19  # what the fake reports per request (12 prompt + 7 completion)


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, shared_state: SharedState, fake: FakeOpenAI
) -> Iterator[Cluster]:
    overrides = {
        "state": shared_state.state,  # one Redis, then a Redis Cluster
        "limits": {"tiers": {"metered": {"rpm": TENANT_RPM}, "default": {}}},
        "core": {
            "resilience": {
                "key_wait_max": "0s",
                "max_retries": 0,
                "breaker_min_requests": 3,
                "breaker_open_for": "60s",
            }
        },
        "providers": {
            "rpm-pool": {
                "kind": "openai",
                "base_url": fake.base_url,
                "api_keys": ["sk-a", "sk-b"],
                "key_limits": {"rpm": KEY_RPM},
                "allow_any_model": True,
            },
            "tpm-key": {
                "kind": "openai",
                "base_url": fake.base_url,
                "api_key": "sk-t",
                "key_limits": {"tpm": KEY_TPM},
                "allow_any_model": True,
            },
            "open": {
                "kind": "openai",
                "base_url": fake.base_url,
                "api_key": "sk-o",
                "allow_any_model": True,
            },
            "shaky": {"kind": "openai", "base_url": fake.base_url, "api_key": "sk-s"},
        },
        # 503: the target's own health (a 500 could be one tenant's content,
        # core.resilience.circuit_board).
        "models": {"shaky-model": {"provider": "shaky", "model": "fail-503"}},
    }
    running = Cluster(Path(tmp_path_factory.mktemp("cluster")), overrides).start()
    yield running
    running.stop()


def drive(
    cluster: Cluster, token: str, model: str, count: int, **extra: object
) -> tuple[Counter[int], float]:
    """`count` requests spread over both edges from 16 threads; statuses and elapsed seconds."""
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    urls = cluster.edge_urls

    def one(i: int) -> int:
        return raw.post(f"{urls[i % len(urls)]}/v1/chat/completions", body, token).status

    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        statuses = Counter(pool.map(one, range(count)))
    return statuses, time.monotonic() - started


def test_key_rpm_is_enforced_across_replicas(cluster: Cluster, fake: FakeOpenAI) -> None:
    fake.reset()
    statuses, elapsed = drive(cluster, cluster.token(), "rpm-pool/gpt-fake", 150)
    per_key = Counter(r.headers["Authorization"] for r in fake.received)
    bound = KEY_RPM + KEY_RPM / 60 * elapsed + 1
    assert set(per_key) == {"Bearer sk-a", "Bearer sk-b"}  # the pool is used
    assert all(n <= bound for n in per_key.values()), (per_key, bound)
    assert statuses[200] == sum(per_key.values())  # every upstream call was a served request
    assert statuses[429] > 0  # the limit really was reached
    assert cluster.core_log(0).count("interlock.usage") and cluster.core_log(1).count(
        "interlock.usage"
    )


def test_key_tpm_is_enforced_across_replicas(cluster: Cluster, fake: FakeOpenAI) -> None:
    fake.reset()
    statuses, elapsed = drive(cluster, cluster.token(), "tpm-key/gpt-fake", 120, max_tokens=10)
    used = USAGE_TOKENS * len(fake.received)
    # Reservations (prompt estimate + max_tokens) are settled to actual usage afterwards; the
    # bound allows one in-flight reservation's estimate error per replica.
    bound = KEY_TPM + KEY_TPM / 60 * elapsed + 2 * 30
    assert used <= bound, (used, bound)
    assert statuses[429] > 0 and statuses[200] > 0


def test_tenant_rpm_is_enforced_across_replicas(cluster: Cluster, fake: FakeOpenAI) -> None:
    fake.reset()
    token = cluster.token(tenant="replicated-tenant", tier="metered")
    statuses, elapsed = drive(cluster, token, "open/gpt-fake", 100)
    bound = TENANT_RPM + TENANT_RPM / 60 * elapsed
    assert statuses[200] <= bound, (statuses, bound)
    assert len(fake.received) == statuses[200]
    assert statuses[429] >= 100 - bound


def direct_to_core(cluster: Cluster, index: int, body: dict[str, object]) -> raw.RawResponse:
    """Call one core replica directly, with a hop credential signed like the edge does."""
    headers, data = hop_client.signed(cluster.env["INTERLOCK_HOP_SECRET"], body)
    url = f"http://127.0.0.1:{cluster.core_ports[index]}/v1/chat/completions"
    return raw.post(url, data, headers=headers)


def test_an_open_circuit_is_shared_with_the_other_replica(
    cluster: Cluster, fake: FakeOpenAI
) -> None:
    fake.reset()
    body = {"model": "shaky-model", "messages": [{"role": "user", "content": "hi"}]}
    codes = [direct_to_core(cluster, 0, body).json()["error"]["code"] for _ in range(5)]
    assert "circuit_open" not in codes[:3] and codes[3:] == ["circuit_open"] * 2
    assert fake.calls["fail-503"] == 3  # core 0 tripped
    # Core 1 never saw the failures; it learns of the open circuit through Redis (1 s sync).
    admin = f"http://127.0.0.1:{cluster.core_admin_ports[1]}"
    deadline = time.monotonic() + 10
    while value(scrape(admin), "interlock_circuit_open", target="shaky/fail-503") != 1:
        assert time.monotonic() < deadline, "core 1 never learned of the open circuit"
        time.sleep(0.1)
    response = direct_to_core(cluster, 1, body)
    assert response.status == 503 and response.json()["error"]["code"] == "circuit_open"
    assert fake.calls["fail-503"] == 3  # core 1 failed fast without calling the upstream
