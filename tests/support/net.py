"""Loopback helpers: free ports and readiness polling (never sleeps to 'wait for' a server)."""

from __future__ import annotations

import random
import socket
import time
import urllib.error
import urllib.request

# Ports for servers the tests start are drawn below Linux's ephemeral range (32768-60999):
# a port the kernel picked with bind(0) can be handed to an outgoing connection's source port,
# or picked again, before the server that was meant to get it binds it ("address in use").
_PORTS = range(20000, 32000)
_handed_out: set[int] = set()
_rng = random.SystemRandom()  # not the global generator, which hypothesis seeds


def free_port() -> int:
    """A loopback port nothing listens on now and this test process never handed out before."""
    for _ in range(500):
        port = _rng.choice(_PORTS)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free loopback port below the ephemeral range")


def wait_http(url: str, timeout: float = 30.0, process=None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready: {last}")


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} not open")
