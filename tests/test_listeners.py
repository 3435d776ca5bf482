"""Operator endpoints on the core's admin listener, and no Host-built redirects (issue 8,
finding 9), over real sockets.

Before: /metrics and /readyz answered anyone who could reach the core's port, with label values
tenants choose; and Starlette answered `/v1/chat/completions/` with a 307 whose Location was
built from the client's Host header. Now the core serves /metrics and /readyz only on
`core.admin_host:admin_port` (loopback by default, same process), and neither tier redirects.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.support import raw
from tests.support.net import wait_http
from tests.support.stack import Stack

HOSTILE = {"host": "attacker.example"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("listeners")).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.parametrize("path", ["/metrics", "/readyz"])
def test_operator_endpoints_are_not_on_the_public_port(stack: Stack, path: str) -> None:
    response = raw.request("GET", stack.core_url + path)
    assert response.status == 404
    assert response.json()["error"]["code"] == "not_found"
    assert b"interlock_" not in response.body


def test_operator_endpoints_answer_on_the_admin_listener(stack: Stack) -> None:
    metrics = raw.request("GET", stack.core_admin_url + "/metrics")
    assert metrics.status == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert b"# TYPE interlock_circuit_open gauge" in metrics.body
    ready = raw.request("GET", stack.core_admin_url + "/readyz")
    assert (ready.status, ready.json()) == (200, {"status": "ready"})
    # The admin listener serves no API, with or without credentials.
    chat = raw.post(stack.core_admin_url + "/v1/chat/completions", {"model": "mock-1"})
    assert chat.status == 404
    # Liveness stays on both.
    assert raw.request("GET", stack.core_url + "/healthz").status == 200
    assert raw.request("GET", stack.core_admin_url + "/healthz").status == 200


def test_the_admin_listener_defaults_to_loopback() -> None:
    from shared.config import parse_config

    config = parse_config({"providers": {"m": {"kind": "mock"}}}, "test", {})
    assert (config.core.admin_host, config.core.admin_port) == ("127.0.0.1", 8082)
    env = {"INTERLOCK_CORE_ADMIN_HOST": "0.0.0.0", "INTERLOCK_CORE_ADMIN_PORT": "9100"}
    config = parse_config({"providers": {"m": {"kind": "mock"}}}, "test", env)
    assert (config.core.admin_host, config.core.admin_port) == ("0.0.0.0", 9100)


@pytest.mark.parametrize("tier", ["edge", "core"])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/chat/completions/"),
        ("POST", "/v1/messages/"),
        ("GET", "/v1/models/"),
        ("GET", "/healthz/"),
    ],
)
def test_a_trailing_slash_is_a_404_envelope_without_a_location(
    stack: Stack, tier: str, method: str, path: str
) -> None:
    base = stack.edge_url if tier == "edge" else stack.core_url
    body = orjson.dumps({"model": "mock-1"}) if method == "POST" else None
    response = raw.request(method, base + path, body, {**HOSTILE, "authorization": "Bearer x"})
    assert response.status == 404, response
    assert "location" not in response.headers
    error = response.json()
    if path.startswith("/v1/messages"):
        assert error["type"] == "error" and error["error"]["type"] == "not_found_error"
    else:
        assert error["error"]["code"] == "not_found"
    assert b"attacker.example" not in response.body


def test_interlock_serve_runs_each_tier_through_the_launcher(tmp_path: Path) -> None:
    """`interlock serve edge|core` (the container command) execs the launcher: the core answers
    readiness on its admin listener only, and the two tiers serve a chat request together."""
    stack = Stack(tmp_path)  # config, keys and free ports; the CLI starts the processes
    interlock = str(Path(sys.executable).with_name("interlock"))
    processes = {}
    try:
        for tier in ("core", "edge"):
            log = (tmp_path / f"{tier}.log").open("wb")
            processes[tier] = subprocess.Popen(
                [interlock, "--config", str(stack.config_path), "serve", tier],
                env=stack.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()
        wait_http(f"{stack.core_admin_url}/readyz", process=processes["core"])
        wait_http(f"{stack.edge_url}/healthz", process=processes["edge"])
        for process in processes.values():
            cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
            assert b"shared.server" in cmdline, cmdline
        assert raw.request("GET", stack.core_url + "/readyz").status == 404
        chat = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}
        assert raw.post(f"{stack.edge_url}/v1/chat/completions", chat, stack.token()).status == 200
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            process.wait(10)
