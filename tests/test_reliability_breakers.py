"""Circuit breakers under injected faults, against a real core (issue 10, items 1 and 2).

Item 1: whatever ends a half-open probe (no key capacity under `key_rpm`, an unexpected failure,
the client leaving), the circuit heals: once the open period is over, the next request probes
and, the target being healthy again, is served. Item 2: a target that fails its streams after
their first chunk (cut, stalled, garbage) opens its circuit, so later streams go to the healthy
fallback.

Requests are sent to the core directly, signed as the edge signs them (tests/support/hop_client).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import hop_client, raw
from tests.support.fake_faults import FakeFaults, Fault
from tests.support.fault_stack import faults_provider
from tests.support.stack import Stack

MESSAGES = [{"role": "user", "content": "hi"}]
OPEN_S = 1.0
HEAL_WITHIN_S = 15.0  # the key's next request (5 s at key_rpm 12), on a loaded machine


def to(provider: str, model: str) -> dict[str, str]:
    return {"provider": provider, "model": model}


def start(workdir: Path, faults: FakeFaults, resilience: dict[str, Any], **models: Any) -> Stack:
    at_fake = faults_provider(faults)
    overrides = {
        "core": {
            "connect_timeout": "500ms",
            "resilience": {"max_retries": 0, "breaker_window": "60s", **resilience},
        },
        "providers": {"faults": at_fake, "limited": {**at_fake, "key_limits": {"rpm": 12}}},
        "models": {name: {"targets": targets} for name, targets in models.items()},
    }
    return Stack(workdir, overrides).start()


@pytest.fixture(scope="module")
def healing(tmp_path_factory: pytest.TempPathFactory, faults: FakeFaults) -> Iterator[Stack]:
    """One failure opens a circuit for 1 s; the `flaky` targets answer as the fake's default
    says, `flaky-limited` and `steady` share a key limited to 12 requests a minute."""
    resilience = {
        "breaker_min_requests": 1,
        "breaker_open_for": f"{OPEN_S}s",
        "key_wait_max": "10ms",
        "completion_timeout": "5s",
    }
    running = start(
        Path(tmp_path_factory.mktemp("healing")),
        faults,
        resilience,
        flaky=[to("faults", "m")],
        **{"flaky-limited": [to("limited", "m")]},
        steady=[to("limited", "fault/ok")],
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def midstream(tmp_path_factory: pytest.TempPathFactory, faults: FakeFaults) -> Iterator[Stack]:
    """Three failures in the window open a circuit for a minute; streams idle 1 s are stalled."""
    resilience = {
        "breaker_min_requests": 3,
        "breaker_open_for": "60s",
        "stream_idle_timeout": "1s",
    }
    running = start(
        Path(tmp_path_factory.mktemp("midstream")),
        faults,
        resilience,
        **{
            "mid-cut": [to("faults", "fault/cut"), to("faults", "fault/ok")],
            "mid-stall": [to("faults", "fault/stall-mid/5"), to("faults", "fault/ok")],
            "mid-garbage": [to("faults", "fault/garbage"), to("faults", "fault/ok")],
        },
    )
    yield running
    running.stop()


def send(stack: Stack, model: str, stream: bool = False) -> raw.RawResponse:
    body = {"model": model, "messages": MESSAGES, "stream": stream}
    return hop_client.post(stack.core_url, stack.env["INTERLOCK_HOP_SECRET"], body)


def code(response: raw.RawResponse) -> Any:
    return response.json()["error"].get("code") if response.status >= 400 else None


def open_circuit(stack: Stack, faults: FakeFaults, model: str = "flaky") -> None:
    """A 503 opens `model`'s circuit; once the open period is over, the next request probes."""
    faults.default = Fault("status", "503")
    assert send(stack, model).status == 503
    refused = send(stack, model)
    assert refused.status == 503 and code(refused) == "circuit_open"
    time.sleep(OPEN_S * 1.3)


def heals(stack: Stack, faults: FakeFaults, model: str = "flaky") -> list[raw.RawResponse]:
    """With the target healthy again, `model` is served within the bound; what it answered
    on the way."""
    faults.default = Fault("ok")
    answers: list[raw.RawResponse] = []
    deadline = time.monotonic() + HEAL_WITHIN_S
    while time.monotonic() < deadline:
        answers.append(send(stack, model))
        if answers[-1].status == 200:
            assert code(send(stack, model)) != "circuit_open"  # closed
            return answers
        time.sleep(0.25)
    raise AssertionError(f"circuit never healed: {[(a.status, code(a)) for a in answers]}")


def test_a_probe_that_finds_the_key_pool_at_its_limit_does_not_wedge_the_circuit(
    healing: Stack, faults: FakeFaults
) -> None:
    open_circuit(healing, faults, "flaky-limited")
    for _ in range(24):  # the key's minute of requests is spent (12 a minute)
        if code(send(healing, "steady")) == "rate_limit_exceeded":
            break
    else:
        raise AssertionError("the key pool never reached its limit")
    answers = heals(healing, faults, "flaky-limited")
    # The probe met the key limit (429) before the key had capacity again; never circuit_open.
    assert code(answers[0]) == "rate_limit_exceeded"
    assert "circuit_open" not in [code(a) for a in answers]


def test_a_probe_ended_by_an_unexpected_failure_does_not_wedge_the_circuit(
    healing: Stack, faults: FakeFaults
) -> None:
    open_circuit(healing, faults)
    faults.default = Fault("malformed")  # `"choices": 5`: a parser failure, not an upstream error
    assert send(healing, "flaky").status >= 500
    heals(healing, faults)


def test_a_probe_the_client_leaves_does_not_wedge_the_circuit(
    healing: Stack, faults: FakeFaults
) -> None:
    open_circuit(healing, faults)
    faults.default = Fault("slow", "3")
    body = {"model": "flaky", "messages": MESSAGES}
    secret, tenant = healing.env["INTERLOCK_HOP_SECRET"], f"t-{uuid.uuid4().hex}"
    hop_client.leave_after(healing.core_port, secret, body, 0.3, tenant)
    heals(healing, faults)


@pytest.mark.parametrize(
    ("model", "failing"),
    [("mid-cut", "cut"), ("mid-stall", "stall-mid"), ("mid-garbage", "garbage")],
)
def test_streams_failing_after_their_first_chunk_open_the_circuit(
    midstream: Stack, faults: FakeFaults, model: str, failing: str
) -> None:
    before = faults.calls[failing]
    for _ in range(3):  # each stream starts, then fails: an error event ends it
        cut = send(midstream, model, stream=True)
        assert cut.status == 200 and cut.headers["x-interlock-model"].startswith(f"fault/{failing}")
        assert b'"error"' in cut.body and not cut.body.endswith(b"data: [DONE]\n\n")
    for _ in range(3):  # the circuit is open: the fallback serves every later stream
        served = send(midstream, model, stream=True)
        assert served.headers["x-interlock-model"] == "fault/ok"
        assert served.body.endswith(b"data: [DONE]\n\n")
    assert faults.calls[failing] == before + 3
