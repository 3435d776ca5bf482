"""Issue 8, finding 9: one tenant's poisoned requests must not open the shared circuit.

Through the real edge and core against the scripted fake: tenant A keeps sending a request the
upstream answers with a 500 because of its content (tests/support/fake_openai.POISON) while
tenant B uses the same target; B never sees circuit_open. A genuine outage, where every
tenant's requests fail, still opens the circuit; and a single request's retries count once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import raw
from tests.support.fake_openai import POISON, FakeOpenAI
from tests.support.stack import Stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI) -> Iterator[Stack]:
    def provider() -> dict[str, object]:
        return {"kind": "openai", "base_url": fake.base_url, "api_key": "sk-test"}

    overrides = {
        "core": {
            "resilience": {
                "max_retries": 2,
                "backoff_base": "5ms",
                "backoff_cap": "10ms",
                "breaker_min_requests": 3,
                "breaker_window": "60s",
                "breaker_open_for": "60s",
            }
        },
        "providers": {"shared": provider(), "flaky": provider()},
        "models": {
            "shared-model": {"provider": "shared", "model": "gpt-fake"},
            "outage": {"provider": "flaky", "model": "fail-500"},
        },
    }
    running = Stack(Path(tmp_path_factory.mktemp("attribution")), overrides).start()
    yield running
    running.stop()


def _chat(stack: Stack, tenant: str, model: str, content: str = "hi") -> raw.RawResponse:
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    return raw.post(f"{stack.edge_url}/v1/chat/completions", body, stack.token(tenant))


def test_one_tenants_poisoned_requests_never_open_the_circuit_for_others(
    stack: Stack, fake: FakeOpenAI
) -> None:
    for _ in range(20):
        bad = _chat(stack, "tenant-a", "shared-model", POISON)
        assert bad.status == 502 and bad.json()["error"]["code"] != "circuit_open"
        good = _chat(stack, "tenant-b", "shared-model")
        assert good.status == 200, good.body
    # A's requests still reached the upstream every time: its own retries included.
    assert fake.calls["gpt-fake"] >= 20 * 3 + 20


def test_a_genuine_outage_still_opens_the_circuit(stack: Stack, fake: FakeOpenAI) -> None:
    fake.reset()
    codes = []
    for tenant in ("tenant-a", "tenant-b", "tenant-c", "tenant-a", "tenant-b"):
        codes.append(_chat(stack, tenant, "outage").json()["error"]["code"])
    # Three requests from several tenants fail (each counted once despite its 2 retries):
    # the circuit opens, and the next requests fail fast without reaching the upstream.
    assert "circuit_open" not in codes[:3]
    assert codes[3:] == ["circuit_open"] * 2
    assert fake.calls["fail-500"] == 3 * 3
