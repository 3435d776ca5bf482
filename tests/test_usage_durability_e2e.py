"""What the usage log keeps when the core is stopped (issue 10, item 12), with real processes:
SIGTERM loses nothing (streams in flight finish, then the final flush runs: usage lines ==
requests), and SIGKILL loses at most the requests in flight and the lines of the last flush
interval (core.observe.usagelog.FLUSH_INTERVAL_S): every line older than that is on disk."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from pathlib import Path

from core.observe.usagelog import FLUSH_INTERVAL_S
from tests.support import raw
from tests.support.stack import Stack

STREAMS = 8


def gateway(tmp_path: Path) -> Stack:
    # 60 ms between chunks: a stream of the mock's answer takes about 1.7 s.
    overrides = {"providers": {"mock": {"kind": "mock", "options": {"chunk_delay_ms": 60}}}}
    return Stack(tmp_path / "stack", overrides).start()


def usage_lines(stack: Stack, tenant: str) -> list[str]:
    return [
        line
        for line in stack.read_logs().splitlines()
        if "interlock.usage" in line and f'"tenant":"{tenant}"' in line
    ]


def chat(stack: Stack, token: str, stream: bool) -> raw.RawResponse:
    body = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return raw.post(f"{stack.edge_url}/v1/chat/completions", body, token)


def test_sigterm_during_streams_loses_no_usage(tmp_path: Path) -> None:
    stack = gateway(tmp_path)
    tenant = f"term-{uuid.uuid4().hex[:8]}"
    token = stack.token(tenant=tenant)
    results: list[tuple[raw.RawResponse, float]] = []

    def stream() -> None:
        results.append((chat(stack, token, True), time.monotonic()))

    clients = [threading.Thread(target=stream) for _ in range(STREAMS)]
    try:
        for client in clients:
            client.start()
        time.sleep(0.5)  # every stream has started and none has finished
        core = stack.processes[0]
        core.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        for client in clients:
            client.join(30)
        stack.wait_exit(core)  # uvicorn re-raises the signal once it has drained: -15
        assert all(ended > signalled for _, ended in results)  # all were in flight
        assert [r.status for r, _ in results] == [200] * STREAMS
        assert all(r.body.rstrip().endswith(b"data: [DONE]") for r, _ in results)
        assert len(usage_lines(stack, tenant)) == STREAMS  # one per request, none lost
    finally:
        stack.stop()


def test_sigkill_loses_at_most_the_last_flush_interval(tmp_path: Path) -> None:
    stack = gateway(tmp_path)
    tenant = f"kill-{uuid.uuid4().hex[:8]}"
    token = stack.token(tenant=tenant)
    try:
        done = [chat(stack, token, stream) for stream in (False, True) * 5]
        assert [r.status for r in done] == [200] * len(done)
        time.sleep(FLUSH_INTERVAL_S * 5)  # older than the flush interval: must be on disk
        stack.processes[0].send_signal(signal.SIGKILL)
        stack.processes[0].wait(10)
        assert len(usage_lines(stack, tenant)) == len(done)
    finally:
        stack.stop()
