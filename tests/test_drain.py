"""SIGTERM with requests in flight: the drain ends within `server.drain_timeout` and says,
while it waits, what it waits for (shared/drain.py).

A replica whose drain hangs neither serves nor exits; uvicorn alone waits for it in silence
and without end. The core here wraps the real app so that one marked request never ends
(tests/support/hanging_core.py); the test sends it straight to the core's port and stops the
core over real signals.
"""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest

from shared.config import ConfigError
from shared.config_full import embedded_defaults, parse_config
from shared.config_server import CORE_SERVER, parse_server
from shared.drain import EXIT_WITHIN_S
from tests.support.hanging_core import (
    BLOCK_MARKER,
    BLOCK_S,
    HANGING_CORE,
    MARKER,
    TASK_MARKER,
)
from tests.support.stack import Stack

DRAIN = 2.0


def stuck_request(port: int, marker: str = MARKER) -> socket.socket:
    """A request the core accepted and will never answer by itself (with another marker of
    tests/support/hanging_core.py: what that marker does)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: core\r\ncontent-type: application/json\r\n"
        + f"idempotency-key: {marker}\r\ncontent-length: 2\r\n\r\n{{}}".encode()
    )
    return sock


def test_a_connection_accepted_as_the_drain_begins_is_told_to_close(tmp_path: Path) -> None:
    """The connection is accepted while the loop is blocked, with SIGTERM pending: uvicorn
    tells the connections it has, then asyncio makes this one's protocol (asyncio's loop;
    uvloop makes it before its timers run). It must still be closed after its request, or a
    client that keeps reusing it (the edge's pool) keeps the core from ever exiting
    (shared/drain.py `_tell_late`). Without that, the read below times out."""
    stack = Stack(tmp_path)
    stack.event_loop = "asyncio"
    stack.start(core_app=HANGING_CORE)
    try:
        blocking = stuck_request(stack.core_port, BLOCK_MARKER)
        time.sleep(0.3)  # the loop is blocked now
        core = stack.processes[0]
        core.send_signal(signal.SIGTERM)
        late = socket.create_connection(("127.0.0.1", stack.core_port), timeout=10)
        time.sleep(BLOCK_S)  # the loop runs again: the drain has begun
        late.sendall(b"GET /v1/models HTTP/1.1\r\nhost: core\r\n\r\n")
        answer = b""
        while chunk := late.recv(65536):  # read to the close: no keep-alive
            answer += chunk
        # Served, then closed (said in the answer, or, answered already, as an idle one).
        assert answer.startswith(b"HTTP/1.1 401"), answer
        began = time.monotonic()
        assert stack.wait_exit(core, 10) in (0, -signal.SIGTERM)
        assert time.monotonic() - began < 5
        blocking.close()
        late.close()
    finally:
        stack.stop()


def test_a_request_that_never_ends_is_cancelled_after_the_drain_timeout(tmp_path: Path) -> None:
    overrides = {"core": {"server": {"drain_timeout": f"{DRAIN}s"}}}
    stack = Stack(tmp_path, overrides).start(core_app=HANGING_CORE)
    try:
        sock = stuck_request(stack.core_port)
        time.sleep(0.5)  # accepted and in the app
        core = stack.processes[0]
        began = time.monotonic()
        core.send_signal(signal.SIGTERM)
        code = stack.wait_exit(core, DRAIN + 20)
        took = time.monotonic() - began
        sock.close()
    finally:
        stack.stop()
    log = stack.logs["core"].read_text(errors="replace")
    assert code in (0, -signal.SIGTERM), log  # uvicorn re-raises the signal it handled
    assert DRAIN - 0.2 < took < DRAIN + 10, (took, log)
    assert "shutdown: still waiting for 1 connection(s) and 1 request(s)" in log, log
    # Where the stuck request waits, by code location: the marker's wait in the test app.
    assert "hanging_core.py" in log and "__call__" in log, log
    assert "Cancel 1 running task(s)" in log, log


def test_an_idle_core_stops_at_once_and_reports_nothing(tmp_path: Path) -> None:
    stack = Stack(tmp_path).start()
    try:
        core = stack.processes[0]
        began = time.monotonic()
        core.send_signal(signal.SIGTERM)
        assert stack.wait_exit(core, 20) in (0, -signal.SIGTERM)
        took = time.monotonic() - began
    finally:
        stack.stop()
    log = stack.logs["core"].read_text(errors="replace")
    assert took < 4, (took, log)
    assert "still waiting" not in log, log


def test_a_core_stuck_in_its_drain_prints_every_threads_stack_and_keeps_waiting(
    tmp_path: Path,
) -> None:
    """What the e2e tests do when a tier will not exit (Stack.wait_exit): SIGUSR1 dumps the
    stacks (faulthandler, shared/server.py), and the process goes on as before."""
    overrides = {"core": {"server": {"drain_timeout": "30s"}}}
    stack = Stack(tmp_path, overrides).start(core_app=HANGING_CORE)
    try:
        sock = stuck_request(stack.core_port)
        time.sleep(0.5)
        core = stack.processes[0]
        core.send_signal(signal.SIGTERM)
        with pytest.raises(AssertionError, match=r"did not exit within 1\.0 s") as failed:
            stack.wait_exit(core, timeout=1.0)
        assert core.poll() is None  # still draining: the dump did not end it
        sock.close()
    finally:
        stack.stop()
    dump = str(failed.value)
    assert "Current thread" in dump and "concurrent/futures/thread.py" in dump, dump
    assert "uvicorn/server.py" in dump and "in serve" in dump, dump


def test_a_process_whose_exit_hangs_after_the_shutdown_ends_with_every_stack(
    tmp_path: Path,
) -> None:
    """Started with SIGTERM ignored, the drained core exits the ordinary way, and asyncio's
    clean-up waits for a task that never ends: EXIT_WITHIN_S later every stack is printed and
    the process ends (shared/drain.py)."""
    stack = Stack(tmp_path)
    stack.ignored_signals = (signal.SIGTERM,)
    stack.start(core_app=HANGING_CORE)
    try:
        sock = stuck_request(stack.core_port, TASK_MARKER)
        assert sock.recv(65536).startswith(b"HTTP/1.1 401")  # answered; its task lives on
        sock.close()
        core = stack.processes[0]
        began = time.monotonic()
        core.send_signal(signal.SIGTERM)
        code = stack.wait_exit(core, EXIT_WITHIN_S + 15)
        took = time.monotonic() - began
    finally:
        stack.stop()
    log = stack.logs["core"].read_text(errors="replace")
    assert code == 1, log  # not -15: it did not end as a drained server does
    assert EXIT_WITHIN_S - 0.5 < took < EXIT_WITHIN_S + 10, (took, log)
    assert "Application shutdown complete" in log, log  # the ledger was written first
    assert "Timeout (0:00:05)!" in log and "asyncio/runners.py" in log, log


@pytest.mark.parametrize("value", ["0s", "-1s", "soon"])
def test_a_drain_timeout_must_be_a_positive_duration(value: str) -> None:
    with pytest.raises(ConfigError, match=r"core\.server\.drain_timeout"):
        parse_server({"drain_timeout": value}, "core.server", CORE_SERVER)


def test_drain_timeouts_default_to_the_longest_stream_of_each_tier() -> None:
    config = parse_config(embedded_defaults({}), "embedded defaults", {})
    assert config.core.server.drain_timeout_s == config.core.upstream_timeout_s == 600
    assert config.edge.server.drain_timeout_s == config.edge.core_timeout_s == 900
