"""shared/h1 against a real uvicorn server on 127.0.0.1, in plain TCP and TLS (certificates
made here): keep-alive reuse, uvicorn's own `100 Continue`, a chunked upload read as it
arrives, a streamed answer, and a server certificate the client cannot verify."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvicorn
import uvloop

from shared.h1 import Client, ConnectFailed
from tests.support.net import free_port
from tests.support.tls_certs import Pki, issue_pki

Scope = dict[str, Any]


async def app(scope: Scope, receive: Any, send: Any) -> None:
    """/echo: the body's size and sha-like summary; /stream: ten chunks; else the client's
    port (which connection the request came on)."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/echo":
        size, more = 0, True
        while more:
            message = await receive()  # the first receive makes uvicorn send `100 Continue`
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        body = str(size).encode()
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for index in range(10):
            await send({"type": "http.response.body", "body": b"%d;" % index, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
        return
    else:
        body = str(scope["client"][1]).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Served:
    def __init__(self, pki: Pki | None) -> None:
        self.port = free_port()
        tls = {"ssl_keyfile": str(pki.key), "ssl_certfile": str(pki.cert)} if pki else {}
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", **tls)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"{'https' if pki else 'http'}://127.0.0.1:{self.port}"

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.server.started
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(5)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return issue_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module", params=["tcp", "tls"])
def served(request: pytest.FixtureRequest, pki: Pki) -> Iterator[Served]:
    with Served(pki if request.param == "tls" else None) as server:
        yield server


def client_for(served: Served, pki: Pki) -> Client:
    return Client(ssl.create_default_context(cafile=str(pki.ca)))


async def _upload(count: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        await asyncio.sleep(0)
        yield b"u" * 10_000


def test_requests_reuse_one_connection(served: Served, pki: Pki) -> None:
    async def test() -> list[bytes]:
        client = client_for(served, pki)
        ports = [await (await client.request("GET", served.url + "/", {})).read() for _ in range(3)]
        client.close()
        return ports

    ports = asyncio.run(test())
    assert len(set(ports)) == 1


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_expect_continue_and_a_chunked_upload(served: Served, pki: Pki, loop: str) -> None:
    """Also on uvloop (what the edge and the core run on): its transports are not asyncio's."""

    async def test() -> tuple[bytes, bytes, list[bool]]:
        client = client_for(served, pki)
        acks: list[bool] = []
        options: dict[str, Any] = {
            "expect_continue": True,
            "on_continue": lambda: acks.append(True),
        }
        whole = await client.request("POST", served.url + "/echo", {}, b"x" * 5000, **options)
        upload = await client.request("POST", served.url + "/echo", {}, _upload(30), **options)
        answers = await whole.read(), await upload.read()
        client.close()
        return *answers, acks

    run = uvloop.run if loop == "uvloop" else asyncio.run
    assert run(test()) == (b"5000", b"300000", [True, True])


def test_a_stream_arrives_chunk_by_chunk(served: Served, pki: Pki) -> None:
    async def test() -> list[bytes]:
        client = client_for(served, pki)
        response = await client.request("GET", served.url + "/stream", {}, read_timeout=5)
        chunks = [chunk async for chunk in response]
        again = await (await client.request("GET", served.url + "/", {})).read()
        client.close()
        assert again.isdigit()
        return chunks

    chunks = asyncio.run(test())
    assert b"".join(chunks) == b"".join(b"%d;" % index for index in range(10))
    assert len(chunks) > 1  # as they arrived, not read whole


def test_an_unverifiable_server_certificate_is_a_connect_failure(pki: Pki) -> None:
    async def test() -> None:
        with Served(pki) as server:
            client = Client()  # the system's CAs: the test CA is unknown
            with pytest.raises(ConnectFailed):
                await client.request("GET", server.url + "/", {}, connect_timeout=5)

    asyncio.run(test())
