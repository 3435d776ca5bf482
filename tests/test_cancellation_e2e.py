"""A client that leaves cancels the work done for it (issue 10, item 8), against a real core.

The client here is the edge, as the core sees it: a raw socket to the core with a signed hop
credential, closed mid-request. Whatever the core was doing then (waiting on a slow upstream, on a
stream's first byte, in a backoff sleep before a retry), the upstream request is cancelled (the
fault fake sees its connection closed), nothing more is tried (no fallback, no retry), and the
usage line says `cancelled`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tests.support import hop_client
from tests.support.fake_faults import FakeFaults
from tests.support.fault_stack import fault_stack, to_faults
from tests.support.stack import Stack

MESSAGES = [{"role": "user", "content": "hi"}]
LEAVE_AFTER_S = 0.3
# How soon after the client leaves the upstream connection must be closed: generous for a
# loaded 2-core machine, well before the timeouts that would otherwise end the wait (1.7 s on).
CANCEL_BOUND_S = 1.0
# Long enough after the client left for the old behaviour (a failover at the 2 s timeout, a
# retry after the 1 s Retry-After) to show.
WATCH_S = 2.5


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, faults: FakeFaults) -> Iterator[Stack]:
    resilience = {
        "first_byte_timeout": "2s",
        "completion_timeout": "2s",
        "max_retries": 2,
        "retry_after_cap": "5s",
    }
    models = {
        "slow-then-fallback": {"targets": [to_faults("fault/slow/4"), to_faults("fault/ok")]},
        "stall-then-fallback": {"targets": [to_faults("fault/stall/4"), to_faults("fault/ok")]},
        "retried": {"targets": [to_faults("fault/status/429")]},
    }
    with fault_stack(tmp_path_factory.mktemp("cancel"), faults, resilience, models) as running:
        yield running


def leave_after(stack: Stack, body: dict[str, Any], seconds: float, tenant: str) -> float:
    secret = stack.env["INTERLOCK_HOP_SECRET"]
    return hop_client.leave_after(stack.core_port, secret, body, seconds, tenant)


def usage_line(stack: Stack, tenant: str) -> dict[str, Any]:
    logs = stack.wait_for_log("interlock.usage", f'"tenant":"{tenant}"')
    line = next(line for line in logs.splitlines() if f'"tenant":"{tenant}"' in line)
    parsed: dict[str, Any] = orjson.loads(line[line.index("{") :])
    return parsed


def cancelled_within_bound(faults: FakeFaults, kind: str, left_at: float) -> None:
    deadline = time.monotonic() + 5
    while not any(k == kind and t >= left_at - LEAVE_AFTER_S for k, t in faults.left):
        assert time.monotonic() < deadline, "the upstream request was never cancelled"
        time.sleep(0.02)
    seen = max(t for k, t in faults.left if k == kind)
    assert seen - left_at < CANCEL_BOUND_S


@pytest.mark.parametrize(
    ("model", "kind", "stream"),
    [("slow-then-fallback", "slow", False), ("stall-then-fallback", "stall", True)],
)
def test_leaving_during_a_slow_upstream_cancels_it_and_fails_over_nowhere(
    stack: Stack, faults: FakeFaults, model: str, kind: str, stream: bool
) -> None:
    tenant = f"leaver-{uuid.uuid4().hex[:8]}"
    served_before = faults.calls["ok"]
    body = {"model": model, "messages": MESSAGES, "stream": stream}
    left_at = leave_after(stack, body, LEAVE_AFTER_S, tenant)
    cancelled_within_bound(faults, kind, left_at)
    time.sleep(WATCH_S)  # the old core failed over at the 2 s timeout and paid for an answer
    assert faults.calls["ok"] == served_before
    line = usage_line(stack, tenant)
    assert line["outcome"] == "cancelled" and line["model"] == model


def test_leaving_during_a_backoff_sleep_stops_the_retries(stack: Stack, faults: FakeFaults) -> None:
    """A 429 with Retry-After: 1 on the only target: the core sleeps before retrying. The
    client leaves during the sleep: no retry is sent."""
    before = faults.calls["status"]
    tenant = f"leaver-{uuid.uuid4().hex[:8]}"
    leave_after(stack, {"model": "retried", "messages": MESSAGES}, LEAVE_AFTER_S, tenant)
    assert usage_line(stack, tenant)["outcome"] == "cancelled"
    time.sleep(WATCH_S)
    assert faults.calls["status"] == before + 1
