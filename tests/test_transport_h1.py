"""core.providers.transport over core.providers.client (shared.h1), against raw servers on
127.0.0.1: what is new with the lean client. Compressed answers (gzip, deflate either way) are
inflated, streams as they arrive, and the cap counts inflated bytes; the connect timeout is
named even when it is the TLS handshake that hangs; connections in use are bounded by
pool_size (a wait for one is under the total timeout); a connection is reused only after its
answer was read to its end; default headers yield to the provider's own, and `traceparent` is
added after signing."""

from __future__ import annotations

import asyncio
import gc
import gzip
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from core.observe.tracing import OUTBOUND
from core.providers.adapters.base import ProviderError, UpstreamRequest
from core.providers.client import ProviderClient
from core.providers.transport import BodyLimits, Timeouts, Transport
from shared.errors import FailureClass
from tests.support.h1_raw import Server, read_request
from tests.test_transport import TARGET, parser

PLAIN = b'{"answer": "' + b"words " * 2000 + b'"}'
Answer = tuple[bytes, bytes]  # the response's head lines (after the status line) and body


def wire(head: bytes, body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\n" + head + b"content-length: %d\r\n\r\n" % len(body) + body


class Upstream:
    """A raw server answering every request on a connection with `answer(path)`, and keeping
    the heads it received."""

    def __init__(self, answer: Callable[[str], Awaitable[bytes]]) -> None:
        self.answer = answer
        self.heads: list[str] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.server = Server(self._serve)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        while head := (await read_request(reader)).decode("latin-1"):
            self.heads.append(head)
            length = next(
                (
                    int(line[15:])
                    for line in head.split("\r\n")
                    if line.lower()[:15] == "content-length:"
                ),
                0,
            )
            await reader.readexactly(length)
            writer.write(await self.answer(head.split(" ", 2)[1]))
            await writer.drain()


def transport_for(client: ProviderClient, total: float = 5, **limits: Any) -> Transport:
    return Transport(
        lambda: client, Timeouts(total_s=total, connect_s=2), None, BodyLimits(**limits)
    )


def run(
    answer: Callable[[str], Awaitable[bytes]], test: Callable[[Upstream, str], Awaitable[Any]]
) -> Any:
    async def main() -> Any:
        upstream = Upstream(answer)
        async with upstream.server:
            return await test(upstream, upstream.server.url)

    return asyncio.run(asyncio.wait_for(main(), 20))


def post(url: str, headers: dict[str, str] | None = None) -> UpstreamRequest:
    return UpstreamRequest("POST", url, headers or {"content-type": "application/json"}, b"{}")


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(
    ("coding", "pack"),
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("deflate", raw_deflate)],
)
def test_compressed_answers_are_inflated(coding: str, pack: Callable[[bytes], bytes]) -> None:
    packed = pack(PLAIN)
    assert len(packed) < len(PLAIN) // 10

    async def answer(path: str) -> bytes:
        return wire(b"content-encoding: %s\r\n" % coding.encode(), packed)

    async def test(upstream: Upstream, url: str) -> Any:
        async with ProviderClient(4) as client:
            return await transport_for(client).fetch(post(url), TARGET, parser([]))

    headers, body = run(answer, test)
    assert body == PLAIN
    assert headers["Content-Encoding"] == coding


def test_a_compressed_stream_is_inflated_as_it_arrives() -> None:
    first, rest = b"data: one\n\n", b"data: two\n\n" * 500
    packer = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)

    def chunk(data: bytes) -> bytes:
        return b"%x\r\n%b\r\n" % (len(data), data)

    async def answer(path: str) -> bytes:
        head = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n"
        return head + chunk(packer.compress(first) + packer.flush(zlib.Z_SYNC_FLUSH))

    async def test(upstream: Upstream, url: str) -> Any:
        async with ProviderClient(4) as client:
            body = await transport_for(client).open(post(url), TARGET, parser([]))
            got = await body.read()  # before the upstream sends another byte
            writer = upstream.writers[0]
            writer.write(chunk(packer.compress(rest) + packer.flush()) + b"0\r\n\r\n")
            tail = b""
            while data := await body.read():
                tail += data
            body.release()
            return got, tail

    got, tail = run(answer, test)
    assert got == first and tail == rest


def test_the_cap_counts_inflated_bytes() -> None:
    packed = gzip.compress(b"x" * (4 * 1024 * 1024))  # 4 MiB in a few KiB

    async def answer(path: str) -> bytes:
        return wire(b"content-encoding: gzip\r\n", packed)

    async def test(upstream: Upstream, url: str) -> Any:
        async with ProviderClient(4) as client:
            transport = transport_for(client, max_response_bytes=1024 * 1024)
            return await transport.fetch(post(url), TARGET, parser([]))

    with pytest.raises(ProviderError) as info:
        run(answer, test)
    assert (info.value.status, info.value.code) == (502, "response_too_large")


def test_a_compressed_body_cut_short_is_transient() -> None:
    packed = gzip.compress(PLAIN)

    async def answer(path: str) -> bytes:
        return wire(b"content-encoding: gzip\r\n", packed[: len(packed) // 2])

    async def test(upstream: Upstream, url: str) -> Any:
        async with ProviderClient(4) as client:
            return await transport_for(client).fetch(post(url), TARGET, parser([]))

    with pytest.raises(ProviderError) as info:
        run(answer, test)
    assert info.value.failure_class is FailureClass.TRANSIENT
    assert info.value.message == "the upstream provider closed the connection"


def test_a_tls_handshake_that_hangs_is_a_connect_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts, never answers the ClientHello

    async def main() -> Any:
        async with Server(silent) as server, ProviderClient(4) as client:
            url = server.url.replace("http://", "https://")
            timeouts = Timeouts(total_s=10, connect_s=0.3)
            transport = Transport(lambda: client, timeouts, None, BodyLimits())
            return await transport.fetch(post(url), TARGET, parser([]))

    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        asyncio.run(main())
    assert time.monotonic() - started < 3
    assert (info.value.status, info.value.code) == (504, "timeout_connect")
    assert info.value.failure_class is FailureClass.TIMEOUT


def test_connections_in_use_are_bounded_by_the_pool_size() -> None:
    """With pool_size 1, an open stream holds the only slot: a second call waits for it
    under its total timeout, and gets it once the stream is closed."""

    async def answer(path: str) -> bytes:
        if path == "/stream":
            return b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nhey\n\r\n"
        return wire(b"", b"ok")

    async def test(upstream: Upstream, url: str) -> Any:
        async with ProviderClient(1) as client:
            stream = await transport_for(client).open(post(f"{url}/stream"), TARGET, parser([]))
            assert await stream.read() == b"hey\n"
            with pytest.raises(ProviderError) as waited:
                await transport_for(client, total=0.3).fetch(post(f"{url}/ok"), TARGET, parser([]))
            assert waited.value.code == "timeout_total"
            assert len(upstream.heads) == 1  # it never went out
            stream.close()
            _, body = await transport_for(client).fetch(post(f"{url}/ok"), TARGET, parser([]))
            return body

    assert run(answer, test) == b"ok"


def test_an_answer_dropped_unended_gives_its_slot_back() -> None:
    async def answer(path: str) -> bytes:
        return b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nhey\n\r\n"

    async def test(upstream: Upstream, url: str) -> Any:
        async with ProviderClient(1) as client:
            transport = transport_for(client, total=0.5)
            body = await transport.open(post(url), TARGET, parser([]))
            del body  # never released nor closed
            gc.collect()
            again = await transport.open(post(url), TARGET, parser([]))  # not timeout_total
            again.close()
            return upstream.server.connections

    assert run(answer, test) == 2


def test_a_connection_is_reused_only_after_its_answer_was_read_to_its_end() -> None:
    async def answer(path: str) -> bytes:
        return wire(b"", b"x" * 1000)

    async def test(upstream: Upstream, url: str) -> Any:
        async with ProviderClient(4) as client:
            transport = transport_for(client)
            for _ in range(3):
                await transport.fetch(post(url), TARGET, parser([]))
            reused = upstream.server.connections
            body = await transport.open(post(url), TARGET, parser([]))
            await body.read()  # not to its end: b"" was never seen
            body.close()
            await transport.fetch(post(url), TARGET, parser([]))
            return reused, upstream.server.connections

    assert run(answer, test) == (1, 2)


class Recorder:
    def __init__(self) -> None:
        self.signed: list[dict[str, str]] = []

    async def sign(self, request: UpstreamRequest) -> UpstreamRequest:
        self.signed.append(dict(request.headers))
        return request


def test_defaults_yield_to_the_providers_headers_and_traceparent_follows_signing() -> None:
    signer = Recorder()
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    async def answer(path: str) -> bytes:
        return wire(b"", b"{}")

    async def test(upstream: Upstream, url: str) -> Any:
        OUTBOUND.set(traceparent)
        async with ProviderClient(4) as client:
            transport = Transport(lambda: client, Timeouts(5, 2), signer, BodyLimits())
            headers = {"User-Agent": "operator/1", "ACCEPT": "application/json"}
            await transport.fetch(post(url, headers), TARGET, parser([]))
        return upstream.heads[0]

    head = run(answer, test).lower()
    assert "user-agent: operator/1\r\n" in head and "interlock" not in head
    assert head.count("accept:") == 1 and "accept: application/json\r\n" in head
    assert "accept-encoding: gzip, deflate\r\n" in head
    assert f"traceparent: {traceparent}\r\n" in head
    assert signer.signed == [{"User-Agent": "operator/1", "ACCEPT": "application/json"}]


def test_a_url_that_cannot_be_sent_fails_over_instead_of_raising() -> None:
    """yarl used to quote a space; shared.h1 sends targets verbatim and refuses one: adapters
    quote what a tenant names, so only a misconfigured base URL gets here, as a 502."""

    async def main() -> Any:
        async with ProviderClient(4) as client:
            return await transport_for(client).fetch(
                post("http://127.0.0.1:9/a b"), TARGET, parser([])
            )

    with pytest.raises(ProviderError) as info:
        asyncio.run(main())
    assert (info.value.status, info.value.failure_class) == (502, FailureClass.TRANSIENT)
