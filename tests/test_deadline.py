"""`core.resilience.total_deadline` bounds the whole request, the attempt in flight included
(issue 10, item 9), against a real core and the fault-injecting faults.

With a 2 s deadline and 10 s timeouts by kind, an upstream that never answers ends the request
at the deadline (not at the 10 s timeout), with a 504 naming the deadline; it is neither retried
nor failed over, since no time is left for either.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.support import hop_client
from tests.support.fake_faults import FakeFaults
from tests.support.fault_stack import fault_stack, to_faults
from tests.support.stack import Stack

MESSAGES = [{"role": "user", "content": "hi"}]
DEADLINE_S = 2.0
MARGIN_S = 3.0  # a loaded 2-core machine; still far below the 10 s timeouts by kind


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, faults: FakeFaults) -> Iterator[Stack]:
    resilience = {
        "total_deadline": f"{DEADLINE_S}s",
        "first_byte_timeout": "10s",
        "completion_timeout": "10s",
        "retry_timeouts": True,  # a timeout may be retried: the deadline must not be
        "max_retries": 2,
    }
    models = {"stalled": {"targets": [to_faults("fault/stall/20"), to_faults("fault/ok")]}}
    with fault_stack(tmp_path_factory.mktemp("deadline"), faults, resilience, models) as running:
        yield running


@pytest.mark.parametrize("stream", [False, True])
def test_the_deadline_ends_the_attempt_in_flight_with_a_504_naming_it(
    stack: Stack, faults: FakeFaults, stream: bool
) -> None:
    stalls, served = faults.calls["stall"], faults.calls["ok"]
    body = {"model": "stalled", "messages": MESSAGES, "stream": stream}
    started = time.monotonic()
    response = hop_client.post(stack.core_url, stack.env["INTERLOCK_HOP_SECRET"], body)
    elapsed = time.monotonic() - started
    assert response.status == 504
    error = response.json()["error"]
    assert error["code"] == "deadline_exceeded" and "total_deadline" in error["message"]
    assert DEADLINE_S * 0.9 <= elapsed < DEADLINE_S + MARGIN_S
    assert response.headers["x-interlock-attempts"] == "1"
    assert (
        faults.calls["stall"] == stalls + 1 and faults.calls["ok"] == served
    )  # no retry, no failover
