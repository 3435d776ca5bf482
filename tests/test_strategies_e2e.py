"""The routing strategies through the real edge and core, with the official OpenAI SDK and fake
upstreams that differ in price and latency (tests/support/fake_faults.py: a fake's `default`
fault is switched to `slow` and back while the gateway runs).

Stated bounds, checked here:
- `cost`: every request goes to the cheapest target that can serve it, and a price change (a
  second config) moves it.
- `latency`: after a target slows down from ~5 ms to 1.5 s, with the other at 50 ms, at most
  ONE more request goes to it (one 1.5 s sample lifts its estimate to ~0.3 s). After it
  recovers, traffic is back on it within `latency_explore_after` (2 s here) plus one request:
  the first request after the estimate went stale probes it and the probe's time replaces it.
- two core replicas with one Redis: a slowdown one replica observed steers the other, which has
  never seen it, within the sync's staleness bound (2 x 1 s).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_faults import FakeFaults, Fault
from tests.support.fake_openai import FakeOpenAI
from tests.support.prom import scrape, value
from tests.support.sdk import client
from tests.support.stack import Stack

FAST, MEDIUM, SLOW = Fault("ok"), Fault("slow", "0.05"), Fault("slow", "1.5")
PIXEL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def served(stack: Stack, model: str, **extra: Any) -> str:
    """The model id (x-interlock-model) that served one chat through the edge."""
    messages = extra.pop("messages", [{"role": "user", "content": "hi"}])
    response = client(stack).chat.completions.with_raw_response.create(
        model=model, messages=messages, **extra
    )
    return str(response.headers["x-interlock-model"])


@pytest.fixture(scope="module")
def one() -> Iterator[FakeFaults]:
    server = FakeFaults()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def two() -> Iterator[FakeFaults]:
    server = FakeFaults(default=MEDIUM)
    server.start()
    yield server
    server.stop()


# --- cost -------------------------------------------------------------------------------


def _cost_stack(workdir: Path, fake: FakeOpenAI, cheap: str, dear: str) -> Stack:
    overrides = {
        "providers": {
            # deepseek's preset takes no images: the cheap target cannot serve one.
            "budget": {
                "kind": "openai",
                "base_url": fake.base_url,
                "api_key": "sk-b",
                "options": {"preset": "deepseek"},
            },
            "premium": {"kind": "openai", "base_url": fake.base_url, "api_key": "sk-p"},
        },
        "models": {
            "cheapest": {
                "strategy": "cost",
                "targets": [
                    {"provider": "premium", "model": "model-p"},
                    {"provider": "budget", "model": "model-b"},
                ],
            }
        },
        "prices": {
            "models": {
                "premium/model-p": {"input": dear, "output": dear},
                "budget/model-b": {"input": cheap, "output": cheap},
            }
        },
    }
    return Stack(workdir, overrides).start()


def test_cost_picks_the_cheapest_capable_target_and_moves_when_a_price_changes(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    stack = _cost_stack(tmp_path / "a", fake_openai, cheap="0.10", dear="5.00")
    try:
        assert [served(stack, "cheapest") for _ in range(3)] == ["model-b"] * 3
        image = [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": PIXEL}},
                ],
            }
        ]
        assert served(stack, "cheapest", messages=image) == "model-p"  # the cheapest capable
    finally:
        stack.stop()
    repriced = _cost_stack(tmp_path / "b", fake_openai, cheap="9.00", dear="5.00")
    try:
        assert [served(repriced, "cheapest") for _ in range(3)] == ["model-p"] * 3
    finally:
        repriced.stop()


# --- latency ------------------------------------------------------------------------------


def _latency_overrides(one: FakeFaults, two: FakeFaults, explore: str) -> dict[str, Any]:
    return {
        "core": {"resilience": {"latency_explore_after": explore}},
        "providers": {
            "one": {"kind": "openai", "base_url": f"{one.url}/v1", "api_key": "sk-1"},
            "two": {"kind": "openai", "base_url": f"{two.url}/v1", "api_key": "sk-2"},
        },
        "models": {
            "quick": {
                "strategy": "latency",
                "targets": [
                    {"provider": "one", "model": "m1"},
                    {"provider": "two", "model": "m2"},
                ],
            }
        },
    }


def test_latency_moves_away_from_a_slowed_target_and_back_after_it_recovers(
    tmp_path: Path, one: FakeFaults, two: FakeFaults
) -> None:
    one.default, two.default = FAST, MEDIUM
    stack = Stack(tmp_path, _latency_overrides(one, two, "2s")).start()
    try:
        # Unseen targets are explored first, then the fast one keeps the traffic.
        assert sorted(served(stack, "quick") for _ in range(2)) == ["m1", "m2"]
        assert [served(stack, "quick") for _ in range(5)] == ["m1"] * 5
        one.default = SLOW
        assert served(stack, "quick") == "m1"  # the slow answer that reveals it
        # From now on m2 serves, but for a probe of m1 once its estimate is 1 s old.
        after = [served(stack, "quick") for _ in range(5)]
        assert after[0] == "m2" and after.count("m1") <= 1, after
        one.default = FAST
        started, back = time.monotonic(), list[str]()
        while time.monotonic() - started < 6 and back[-3:] != ["m1"] * 3:
            back.append(served(stack, "quick"))
        assert back[-3:] == ["m1"] * 3, back
        assert len(back) <= 2.0 / 0.05 + 4, back  # stale after 2 s of 50 ms answers, + probe
    finally:
        stack.stop()
        one.default, two.default = FAST, MEDIUM


def test_two_replicas_share_the_estimate_through_redis(
    tmp_path: Path, redis_url: str, one: FakeFaults, two: FakeFaults
) -> None:
    """Two gateways (edge + core each) on one Redis: replica B never sees m1 slow itself."""
    one.default, two.default = FAST, MEDIUM
    overrides = {**_latency_overrides(one, two, "60s"), "state": {"redis_url": redis_url}}
    a = Stack(tmp_path / "a", overrides).start()
    b = Stack(tmp_path / "b", overrides).start()
    try:
        for stack in (a, b):
            assert sorted(served(stack, "quick") for _ in range(2)) == ["m1", "m2"]
            assert [served(stack, "quick") for _ in range(3)] == ["m1"] * 3
        one.default = SLOW
        assert served(a, "quick") == "m1"
        assert served(a, "quick") == "m2"  # a has moved away
        time.sleep(3)  # the staleness bound (2 x the 1 s sync interval), and a margin
        assert [served(b, "quick") for _ in range(3)] == ["m2"] * 3  # b follows, unprompted
    finally:
        a.stop()
        b.stop()
        one.default, two.default = FAST, MEDIUM


# --- active health checks -----------------------------------------------------------------


def test_health_checks_feed_the_estimates_of_idle_targets(
    tmp_path: Path, one: FakeFaults, two: FakeFaults
) -> None:
    """m2 (50 ms) is listed first: unseen, it would be explored first. Checks every second
    measure both while no request is sent, so the first request goes to the faster m1."""
    one.default, two.default = FAST, MEDIUM
    overrides = _latency_overrides(one, two, "60s")
    quick = overrides["models"]["quick"]
    quick["targets"].reverse()
    quick["health_check_interval"] = "1s"
    received, started = len(two.received), time.monotonic()
    stack = Stack(tmp_path, overrides).start()
    try:
        time.sleep(2.5)
        checks = [r.json for r in two.received[received:]]
        most = int(time.monotonic() - started) + 1  # one per interval while idle
        assert 1 <= len(checks) <= most, checks
        assert all(c["max_tokens"] == 1 and c["model"] == "m2" for c in checks), checks
        assert [served(stack, "quick") for _ in range(3)] == ["m1"] * 3
        found = scrape(stack.core_admin_url)
        latency = "interlock_target_latency_seconds"
        assert value(found, latency, target="two/m2", kind="ttft") is not None
        assert (value(found, "interlock_health_checks_total") or 0) >= 2
    finally:
        stack.stop()
