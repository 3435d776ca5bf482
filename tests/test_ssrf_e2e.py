"""Issue 8, findings 1 and 7(a), through the real edge and core over loopback sockets.

A listener on 127.0.0.1 and ::1 answers every connection with a PNG and counts connections: an
image URL that reaches it would be inlined and sent upstream. Each bypass spelling the probe
used (circled, full-width, mathematical digits, ideographic dots, legacy IPv4 forms, IPv6
spellings) must get the same 400 and never open a connection to it. The target is an Ollama
preset on a fake OpenAI server: it needs image bytes, so the core fetches remote images.

The `strict` stack runs with the production guard untouched (no allowlist, private networks
refused). The `capped` stack adds one exact allow-listed address:port for a loopback image
server (`core.image_allow_hosts`), so positive fetches, caps and failure kinds can be exercised
while every other loopback port, the listener's included, stays refused.
"""

# ruff: noqa: RUF001  (confusable digits and dots are the attack under test)

from __future__ import annotations

import asyncio
import base64
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.support.fake_images import PNG, ImageServer
from tests.support.fake_openai import FakeOpenAI
from tests.support.net import free_port
from tests.support.sdk import anthropic_client, client
from tests.support.stack import Stack

MIB = 1024 * 1024


class Listener:
    """A loopback HTTP server (IPv4 and IPv6, one port) that counts TCP connections."""

    def __init__(self) -> None:
        self.port = free_port()
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            head = f"HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: {len(PNG)}"
            writer.write(head.encode() + b"\r\nconnection: close\r\n\r\n" + PNG)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            writer.close()

    def start(self) -> Listener:
        self._thread.start()
        hosts = ["127.0.0.1", "::1"] if socket.has_ipv6 else ["127.0.0.1"]
        start = asyncio.start_server(self._serve, hosts, self.port)
        self._server = asyncio.run_coroutine_threadsafe(start, self._loop).result(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    server = Listener().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def images() -> Iterator[ImageServer]:
    server = ImageServer().start()
    yield server
    server.stop()


def _overrides(upstream: FakeOpenAI, core: dict[str, Any]) -> dict[str, Any]:
    return {
        "core": {"image_allow_private_networks": False, **core},
        "providers": {
            "local": {
                "kind": "openai",
                "base_url": upstream.base_url,
                "options": {"preset": "ollama"},
            },
        },
        "models": {"llava": {"provider": "local", "model": "llava"}},
    }


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory, upstream: FakeOpenAI) -> Iterator[Stack]:
    stack = Stack(Path(tmp_path_factory.mktemp("strict")), _overrides(upstream, {})).start()
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def closed_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def capped(
    tmp_path_factory: pytest.TempPathFactory,
    upstream: FakeOpenAI,
    images: ImageServer,
    closed_port: int,
) -> Iterator[Stack]:
    core = {
        "image_allow_hosts": [f"127.0.0.1:{images.port}", f"127.0.0.1:{closed_port}"],
        "image_fetch_timeout": "1s",
    }
    stack = Stack(Path(tmp_path_factory.mktemp("capped")), _overrides(upstream, core)).start()
    yield stack
    stack.stop()


def _content(*urls: str) -> list[Any]:
    return [{"type": "text", "text": "what is this?"}] + [
        {"type": "image_url", "image_url": {"url": url}} for url in urls
    ]


def _refused(stack: Stack, *urls: str, stream: bool = False) -> dict[str, Any]:
    with pytest.raises(openai.BadRequestError) as info:
        client(stack).chat.completions.create(
            model="llava", messages=[{"role": "user", "content": _content(*urls)}], stream=stream
        )
    assert info.value.status_code == 400
    body = info.value.body
    assert isinstance(body, dict)
    return body


def uniform(param: str = "messages[0].content[1].image_url.url") -> dict[str, Any]:
    """The one error every refusal and failure gets (default image_max_bytes: 5 MiB)."""
    return {
        "message": f"the image at {param} could not be used: it must be an http(s) URL of a "
        f"publicly reachable PNG, JPEG, GIF or WebP image of at most {5 * MIB} bytes",
        "type": "invalid_request_error",
        "param": param,
        "code": "invalid_image_url",
    }


BYPASS_HOSTS = [
    "127.0.0.1",
    "①②⑦.0.0.1",  # circled digits (NFKC)
    "１２７.０.０.１",  # full-width digits
    "127。0。0。1",  # ideographic full stops
    "𝟏𝟐𝟕.𝟎.𝟎.𝟏",  # mathematical bold digits
    "①②⑦。⓪。⓪。①",
    "localhost",
    "LocalHost.",
    "0x7f000001",  # getaddrinfo's inet_aton forms
    "0x7f.1",
    "2130706433",
    "0177.0.0.1",
    "127.1",
    "0.0.0.0",  # reaches the local host on Linux
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[0:0:0:0:0:ffff:7f00:1]",
    "[::127.0.0.1]",  # IPv4-compatible
    "[64:ff9b::7f00:1]",  # NAT64
    "[2002:7f00:1::1]",  # 6to4
]


@pytest.mark.parametrize("host", BYPASS_HOSTS)
def test_bypass_spellings_never_reach_loopback(
    strict: Stack, listener: Listener, upstream: FakeOpenAI, host: str
) -> None:
    upstream.reset()
    body = _refused(strict, f"http://{host}:{listener.port}/cat.png?sig=abc")
    assert body == uniform()
    assert listener.connections == 0
    assert upstream.received == []
    logs = strict.wait_for_log("image refused for messages[0].content[1].image_url.url")
    assert "sig=abc" not in logs


def test_streaming_request_is_refused_before_the_stream(strict: Stack, listener: Listener) -> None:
    body = _refused(strict, f"http://①②⑦.0.0.1:{listener.port}/a.png", stream=True)
    assert body == uniform()
    assert listener.connections == 0


def test_messages_api_url_images_go_through_the_same_guard(
    strict: Stack, listener: Listener
) -> None:
    """Anthropic-format image sources of type url, routed to a bytes-only target."""
    image: Any = {"type": "url", "url": f"http://１２７.０.０.１:{listener.port}/a.png"}
    with pytest.raises(anthropic.BadRequestError) as info:
        anthropic_client(strict).messages.create(
            model="llava",
            max_tokens=32,
            messages=[{"role": "user", "content": [{"type": "image", "source": image}]}],
        )
    assert info.value.body == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": uniform("messages[0].content[0].image_url.url")["message"],
        },
    }
    assert listener.connections == 0


def test_allowed_image_is_inlined_for_both_apis(
    capped: Stack, images: ImageServer, upstream: FakeOpenAI
) -> None:
    upstream.reset()
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    client(capped).chat.completions.create(
        model="llava",
        messages=[{"role": "user", "content": _content(f"{images.url}/png")}],
    )
    image: Any = {"type": "url", "url": f"{images.url}/png"}
    anthropic_client(capped).messages.create(
        model="llava",
        max_tokens=32,
        messages=[{"role": "user", "content": [{"type": "image", "source": image}]}],
    )
    chat, messages = upstream.received
    assert chat.json["messages"][0]["content"][1]["image_url"]["url"] == data_url
    assert messages.json["messages"][0]["content"][0]["image_url"]["url"] == data_url


def test_every_failure_gives_the_same_answer(
    capped: Stack, images: ImageServer, listener: Listener, closed_port: int
) -> None:
    """Not an oracle: wrong status, type, size, redirect loop, timeout, connection refused,
    a refused address, a redirect to one, all look alike to the tenant."""
    listening = f"http://127.0.0.1:{listener.port}/a.png"
    failures = [
        f"{images.url}/missing",
        f"{images.url}/html",
        f"{images.url}/mislabelled",
        f"{images.url}/sized/0/{5 * MIB + 1}",
        f"{images.url}/loop",
        f"{images.url}/slow",
        f"http://127.0.0.1:{closed_port}/a.png",
        listening,
        f"{images.url}/redirect?to={listening}",
        f"http://①②⑦.0.0.1:{listener.port}/a.png",
        f"http://localhost:{listener.port}/a.png",
        "http://user:pw@example.com/a.png",
        "http://exa_mple.com/a.png",
    ]
    bodies = [_refused(capped, url) for url in failures]
    assert bodies == [uniform()] * len(failures)
    assert listener.connections == 0


def test_identical_urls_are_fetched_once(
    capped: Stack, images: ImageServer, upstream: FakeOpenAI
) -> None:
    images.reset()
    upstream.reset()
    url = f"{images.url}/sized/dedup/100"
    client(capped).chat.completions.create(
        model="llava", messages=[{"role": "user", "content": _content(*[url] * 5)}]
    )
    assert images.calls["sized"] == 1
    [sent] = upstream.received
    parts = sent.json["messages"][0]["content"][1:]
    assert [p["image_url"]["url"][:22] for p in parts] == ["data:image/png;base64,"] * 5


def _peak_rss(stack: Stack) -> int:
    """The core's peak resident set (VmHWM), in bytes."""
    status = Path(f"/proc/{stack.processes[0].pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def test_the_probes_25_url_request_is_refused_before_fetching(
    capped: Stack, images: ImageServer, upstream: FakeOpenAI
) -> None:
    """The probe: a 2.4 KB request with 25 URLs took the core from 61 MB to 503 MB RSS."""
    images.reset()
    upstream.reset()
    before = _peak_rss(capped)
    urls = [f"{images.url}/sized/{n}/{4 * MIB}" for n in range(25)]
    body = _refused(capped, *urls)
    assert body["code"] == "too_many_images"
    assert body["param"] == "messages[0].content[17].image_url.url"
    assert images.calls["sized"] == 0 and upstream.received == []
    assert _peak_rss(capped) - before < 16 * MIB


def test_total_bytes_are_capped_while_streaming(
    capped: Stack, images: ImageServer, upstream: FakeOpenAI
) -> None:
    """16 images of 4 MiB (64 MiB, 85 MiB as base64) stop at the 15 MiB request total."""
    upstream.reset()
    before = _peak_rss(capped)
    urls = [f"{images.url}/sized/total{n}/{4 * MIB}" for n in range(16)]
    body = _refused(capped, *urls)
    assert body["code"] == "images_too_large"
    assert body["param"] == "messages"
    assert upstream.received == []
    assert _peak_rss(capped) - before < 64 * MIB


def test_largest_allowed_request_stays_bounded_upstream(
    capped: Stack, images: ImageServer, upstream: FakeOpenAI
) -> None:
    upstream.reset()
    urls = [f"{images.url}/sized/ok{n}/{int(4.5 * MIB)}" for n in range(3)]
    client(capped).chat.completions.create(
        model="llava", messages=[{"role": "user", "content": _content(*urls)}]
    )
    [sent] = upstream.received
    assert len(sent.body) < 15 * MIB * 4 // 3 + 64 * 1024
