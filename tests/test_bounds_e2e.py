"""Bounds on what an upstream can make the core hold (issue 10, items 6 and 10), through the
real edge and core against the fault-injecting faults: a whole answer over
`core.max_response_bytes` fails over (never retried on the same target), and every timeout that
ends a stream names itself: a trickle is a throughput timeout, a stall an idle timeout."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import raw
from tests.support.fake_faults import FakeFaults
from tests.support.fault_stack import ANY_MODEL, fault_stack, to_faults
from tests.support.stack import Stack

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, faults: FakeFaults) -> Iterator[Stack]:
    resilience = {
        # fault/drip/0.5 sends ~150 bytes every 0.5 s: never idle, under 4096 per 2 s;
        # a stall is idle first (the window is longer than the idle timeout).
        "stream_idle_timeout": "1500ms",
        "stream_min_bytes": 4096,
        "stream_throughput_window": "2s",
        "max_retries": 2,
        "backoff_base": "10ms",
        "backoff_cap": "50ms",
    }
    models = {"huge-fallback": {"targets": [to_faults("fault/huge/16"), to_faults("fault/ok")]}}
    core = {"max_response_bytes": "8MiB"}
    workdir = tmp_path_factory.mktemp("bounds")
    with fault_stack(workdir, faults, resilience, models, core, ANY_MODEL) as running:
        yield running


def chat(stack: Stack, model: str, stream: bool = False) -> raw.RawResponse:
    body = {"model": model, "messages": MESSAGES, "stream": stream}
    return raw.post(f"{stack.edge_url}/v1/chat/completions", body, stack.token())


def last_event(response: raw.RawResponse) -> Any:
    text = response.body.decode()
    assert response.status == 200 and "[DONE]" not in text
    data = text.strip().split("\n\n")[-1].removeprefix("data: ")
    return raw.RawResponse(200, {}, data.encode()).json()


def test_an_answer_over_the_cap_fails_over_and_is_not_retried_there(
    stack: Stack, faults: FakeFaults
) -> None:
    faults.reset()
    response = chat(stack, "huge-fallback")
    assert response.status == 200, response.body[:300]
    assert response.json()["choices"][0]["message"]["content"] == "Hello from the fault injector."
    assert response.headers["x-interlock-failovers"] == "1"
    assert faults.calls["huge"] == 1  # the same 16 MB would come back: not asked twice


def test_an_answer_over_the_cap_without_fallback_is_a_502_naming_it(
    stack: Stack, faults: FakeFaults
) -> None:
    faults.reset()
    response = chat(stack, "faults/fault/huge/16")
    assert response.status == 502
    error = response.json()["error"]
    assert (error["message"], error["code"]) == (
        "upstream response too large",
        "response_too_large",
    )
    assert faults.calls["huge"] == 1


def test_a_drip_ends_with_a_throughput_error_event(stack: Stack) -> None:
    """Before: never idle, so it ran to the total timeout (600 s) and was called idle."""
    error = last_event(chat(stack, "faults/fault/drip/0.5", stream=True))["error"]
    assert error["code"] == "timeout_throughput"
    assert "(throughput timeout)" in error["message"]


def test_a_stall_mid_stream_ends_with_an_idle_error_event(stack: Stack) -> None:
    error = last_event(chat(stack, "faults/fault/stall-mid/30", stream=True))["error"]
    assert error["code"] == "timeout_idle"
    assert error["message"] == "the upstream stream stalled (idle timeout)"
