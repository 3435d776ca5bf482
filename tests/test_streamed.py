"""shared.streamed: a stream's body stops when its client leaves (ASGI 2.3: uvicorn's `send`
returns quietly after a disconnect, so only the receive channel tells), and a stream that ends
before the watch begins never touches the receive channel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.requests import ClientDisconnect

from shared.client_watch import WATCH_AFTER_S
from shared.streamed import Streamed

SCOPE_23: dict[str, Any] = {"type": "http", "asgi": {"spec_version": "2.3"}}


def test_a_client_that_leaves_cancels_the_body_where_it_stands() -> None:
    ended: list[str] = []
    sent: list[dict[str, Any]] = []

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b"first"
            await asyncio.sleep(3600)  # an upstream that stalls
            yield b"never"
        except asyncio.CancelledError:
            ended.append("cancelled")
            raise

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(0.05)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await Streamed(body())(SCOPE_23, receive, send)
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0  # the cancel was absorbed
        return loop.time() - started

    took = asyncio.run(scenario())
    assert ended == ["cancelled"]
    assert [m.get("body") for m in sent[1:]] == [b"first"]  # no end: the stream was cut
    assert took < WATCH_AFTER_S + 1.0


def test_a_short_stream_never_reads_the_receive_channel() -> None:
    sent: list[dict[str, Any]] = []

    async def body() -> AsyncIterator[bytes]:
        yield b"a"
        yield b"b"

    async def receive() -> dict[str, Any]:
        raise AssertionError("read")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(Streamed(body())(SCOPE_23, receive, send))
    assert [m.get("body") for m in sent[1:]] == [b"a", b"b", b""]
    assert sent[-1]["more_body"] is False


def test_a_cancel_from_elsewhere_still_propagates() -> None:
    async def body() -> AsyncIterator[bytes]:
        await asyncio.sleep(3600)
        yield b"never"

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        pass

    async def scenario() -> None:
        task = asyncio.ensure_future(Streamed(body())(SCOPE_23, receive, send))
        await asyncio.sleep(0.1)
        task.cancel()  # a shutdown
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_on_asgi_2_4_a_failed_send_is_a_client_disconnect() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"a"

    async def receive() -> dict[str, Any]:
        raise AssertionError("not read on ASGI 2.4")

    async def send(message: dict[str, Any]) -> None:
        raise OSError("gone")

    scope = {"type": "http", "asgi": {"spec_version": "2.4"}}
    with pytest.raises(ClientDisconnect):
        asyncio.run(Streamed(body())(scope, receive, send))
