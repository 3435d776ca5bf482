"""The edge's relay when the core misbehaves: a core that dies mid-event must leave the
client with a parseable error event in its API's format, never a clean close."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest
from aiohttp import web

from tests.support import raw
from tests.support.fake_server import FakeServer
from tests.support.stack import Stack

FIRST = (
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":'
    b'[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]}\n\n'
)


def _dying_core() -> web.Application:
    async def stream(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(FIRST)
        # A pause, as between real events: aiohttp drops data still buffered when the loss of
        # the connection is seen before it was read, so without it FIRST could vanish too.
        await asyncio.sleep(0.3)
        await response.write(b'data: {"id":"c1","choi')  # half an event, then the core dies
        assert request.transport is not None
        request.transport.close()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", stream)
    app.router.add_post("/v1/messages", stream)
    return app


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    core = FakeServer(_dying_core()).start()
    stack = Stack(
        Path(tmp_path_factory.mktemp("relay")), {"edge": {"pools": {"default": [core.url]}}}
    ).start()
    yield stack
    stack.stop()
    core.stop()


def test_half_written_event_is_dropped_and_an_error_event_follows(edge: Stack) -> None:
    body = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    response = raw.post(f"{edge.edge_url}/v1/chat/completions", body, edge.token())
    text = response.body.decode()
    assert text.startswith(FIRST.decode())
    after = text[len(FIRST) :]  # the half event never reached the client: the error follows
    assert after.startswith('data: {"error":{"message":"the gateway core connection')
    assert after.endswith('"code":"core_unavailable"}}\n\n') and after.count("\n\n") == 1


def test_sdks_raise_on_a_core_that_died(edge: Stack) -> None:
    client = openai.OpenAI(base_url=f"{edge.edge_url}/v1", api_key=edge.token(), max_retries=0)
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(
            model="mock-1", messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            pass
    body = {
        "model": "mock-1",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }
    text = raw.post(f"{edge.edge_url}/v1/messages", body, edge.token()).body.decode()
    assert text.rstrip().endswith('"message":"the gateway core connection was lost mid-stream"}}')
    assert "event: error\ndata: " in text


def test_anthropic_clients_are_told_where_the_key_goes(edge: Stack) -> None:
    client = anthropic.Anthropic(base_url=edge.edge_url, api_key="", max_retries=0)
    response = raw.post(
        f"{edge.edge_url}/v1/messages", {"model": "mock-1", "max_tokens": 5, "messages": []}
    )
    assert response.status == 401
    assert "x-api-key" in response.json()["error"]["message"]
    assert client is not None
