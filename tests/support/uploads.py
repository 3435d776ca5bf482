"""The stack and helpers the streamed-upload tests share (tests/test_upload_*e2e.py): a real
edge and core with upload limits of their own, the fake OpenAI media host, and the probes the
tests read the tiers with (RSS, open spool files) and write raw uploads with (chunked, so
neither Content-Length nor the SDK decides when the edge finds out)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import orjson

from tests.support import sockets
from tests.support.fake_media import FakeOpenAIMedia
from tests.support.stack import Stack

MiB = 1024 * 1024
EDGE_LIMIT = 34 * MiB
CORE_LIMIT = 32 * MiB
PATH = "/v1/audio/transcriptions"


def upload_stack(workdir: Path, media: FakeOpenAIMedia, spool_dir: Path) -> Stack:
    oai = {"kind": "openai", "base_url": f"{media.url}/v1", "api_key": media.api_key}
    targets = [{"provider": "oai", "model": "whisper-fail-500"}]
    overrides = {
        "providers": {
            "oai": {**oai, "options": {"preset": "openai"}},
            "groq": {**oai, "options": {"preset": "groq"}},
        },
        "models": {
            "whisper": {"provider": "oai", "model": "whisper-1"},
            "whisper-slow": {"provider": "groq", "model": "whisper-slow-once"},
            "whisper-broken": {"targets": targets},
            "whisper-failover": {
                "targets": [*targets, {"provider": "groq", "model": "whisper-large-v3"}]
            },
        },
        "edge": {"max_upload_bytes": EDGE_LIMIT},
        "core": {"max_upload_bytes": CORE_LIMIT, "upload_dir": str(spool_dir)},
    }
    return Stack(workdir, overrides).start()


def client(stack: Stack, **options: Any) -> openai.OpenAI:
    options.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=f"{stack.edge_url}/v1", api_key=stack.token(), **options)


def pids(stack: Stack) -> tuple[int, int]:
    core, edge = stack.processes[:2]
    return core.pid, edge.pid


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def spool_fds(pid: int) -> list[str]:
    """The core's open descriptors on upload spool files (unlinked, so '... (deleted)')."""
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if "interlock-upload-" in target:
            found.append(target)
    return found


class PeakRss:
    """Samples both tiers' RSS every few milliseconds while a request runs."""

    def __init__(self, *watched: int) -> None:
        self.pids = watched
        self.before = {pid: rss(pid) for pid in watched}
        self.peak = dict(self.before)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self.pids:
                self.peak[pid] = max(self.peak[pid], rss(pid))
            time.sleep(0.002)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def growth(self, pid: int) -> int:
        return self.peak[pid] - self.before[pid]


def chunked(url: str, token: str, parts: Iterator[bytes], content_type: str) -> Any:
    """POSTs a chunked body (no Content-Length) while reading the answer on the side, so the
    answer is read even if the server stops reading the body first."""
    host, port = url.removeprefix("http://").split(":")
    sock = sockets.connect(int(port), timeout=30)
    head = (
        f"POST {PATH} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {token}\r\n"
        f"content-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    answer: dict[str, Any] = {}
    reader = threading.Thread(target=lambda: answer.update(read=read_answer(sock)))
    reader.start()
    try:
        sock.sendall(head.encode())
        for part in parts:
            sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # refused mid-body: the answer was sent, then the server stopped reading
    reader.join(30)
    sock.close()
    return answer["read"]


def read_answer(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    status, _headers, body = sockets.read_response(sock, 30)
    return status, orjson.loads(body)


def multipart_parts(size: int, boundary: str = "Bnd") -> Iterator[bytes]:
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    block = bytes(256 * 1024)
    for _ in range(size // len(block)):
        yield block
    yield f"\r\n--{boundary}--\r\n".encode()


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
