"""A preset end to end: the openai SDK -> edge -> core (preset mistral) -> a Mistral-like fake.

The fake is as strict as Mistral's API: an unknown top-level field (stream_options, seed,
max_completion_tokens, user ...) or a `name` on a user message is a 422 "extra_forbidden", and
streamed usage rides on the final chunk together with finish_reason, unasked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from aiohttp import web
from openai.types.chat import ChatCompletionMessageParam

from tests.support.fake_server import FakeServer, Received
from tests.support.sdk import client
from tests.support.stack import Stack

TEXT = "Bonjour from the fake Mistral."
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say bonjour"}]
_FIELDS = frozenset(
    {
        "model",
        "messages",
        "temperature",
        "top_p",
        "max_tokens",
        "stream",
        "stop",
        "random_seed",
        "response_format",
        "tools",
        "tool_choice",
        "presence_penalty",
        "frequency_penalty",
        "n",
        "prediction",
        "parallel_tool_calls",
        "prompt_mode",
        "safe_prompt",
    }
)
_USER_FIELDS = frozenset({"role", "content"})


def _forbidden(loc: list[Any], value: Any) -> web.Response:
    detail = [
        {
            "type": "extra_forbidden",
            "loc": loc,
            "msg": "Extra inputs are not permitted",
            "input": value,
        }
    ]
    body = {
        "object": "error",
        "message": {"detail": detail},
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    return web.Response(status=422, body=orjson.dumps(body), content_type="application/json")


class FakeMistral(FakeServer):
    def __init__(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        super().__init__(app)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = orjson.loads(raw)
        self.received.append(
            Received(request.method, request.path, dict(request.headers), raw, body)
        )
        if request.headers.get("Authorization") != "Bearer mistral-key":
            return web.json_response({"message": "Unauthorized", "request_id": "x"}, status=401)
        for key, value in body.items():
            if key not in _FIELDS:
                return _forbidden(["body", key], value)
        for i, message in enumerate(body["messages"]):
            if message["role"] == "user":
                for key in message:
                    if key not in _USER_FIELDS:
                        return _forbidden(["body", "messages", i, "user", key], message[key])
        usage = {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}
        head = {
            "id": "cmpl-mistral1",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body["model"],
        }
        if not body.get("stream"):
            message = {"role": "assistant", "content": TEXT, "tool_calls": None}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            return web.json_response(
                {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
            )
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        events: list[dict[str, Any]] = [
            {
                **head,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "finish_reason": None,
                    }
                ],
            }
        ]
        for word in ("Bonjour", " from", " the", " fake", " Mistral."):
            events.append(
                {
                    **head,
                    "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
                }
            )
        events.append(
            {
                **head,
                "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "stop"}],
                "usage": usage,
            }
        )
        for event in events:
            await response.write(b"data: " + orjson.dumps(event) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


@pytest.fixture(scope="module")
def mistral() -> Iterator[FakeMistral]:
    server = FakeMistral()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mistral: FakeMistral) -> Iterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("presets-stack")
    overrides = {
        "providers": {
            "mistral": {
                "kind": "openai",
                "base_url": f"{mistral.url}/v1",
                "api_key": "mistral-key",
                "options": {"preset": "mistral"},
            },
        },
        "models": {
            "mistral-small": {"provider": "mistral", "model": "mistral-small-latest"},
            "mistral-lenient": {
                "provider": "mistral",
                "model": "mistral-small-latest",
                "params": "lenient",
            },
        },
    }
    running = Stack(workdir, overrides).start()
    yield running
    running.stop()


def test_seed_and_max_completion_tokens_arrive_under_mistral_names(
    stack: Stack, mistral: FakeMistral
) -> None:
    mistral.reset()
    completion = client(stack).chat.completions.create(
        model="mistral-small",
        messages=[{"role": "user", "content": "Say bonjour", "name": "alice"}],
        seed=1234,
        max_completion_tokens=50,
        temperature=0.3,
    )
    assert completion.choices[0].message.content == TEXT
    assert completion.usage is not None and completion.usage.total_tokens == 15
    [sent] = mistral.received
    assert sent.json == {
        "model": "mistral-small-latest",
        "messages": [{"role": "user", "content": "Say bonjour"}],
        "random_seed": 1234,
        "max_tokens": 50,
        "temperature": 0.3,
    }


def test_streaming_usage_arrives_as_its_own_last_chunk(stack: Stack, mistral: FakeMistral) -> None:
    mistral.reset()

    async def run() -> list[Any]:
        api = openai.AsyncOpenAI(
            base_url=f"{stack.edge_url}/v1", api_key=stack.token(), max_retries=0
        )
        stream = await api.chat.completions.create(
            model="mistral-small",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        return [chunk async for chunk in stream]

    chunks = asyncio.run(run())
    assert "stream_options" not in mistral.received[-1].json  # Mistral would answer 422
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None and last.usage.total_tokens == 15
    assert [c for c in chunks if c.usage is not None] == [last]
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT


def test_streaming_without_include_usage_shows_no_usage(stack: Stack) -> None:
    chunks = list(
        client(stack).chat.completions.create(model="mistral-small", messages=MESSAGES, stream=True)
    )
    assert chunks and all(c.choices and c.usage is None for c in chunks)


def test_strict_model_rejects_a_param_mistral_lacks(stack: Stack, mistral: FakeMistral) -> None:
    mistral.reset()
    with pytest.raises(openai.BadRequestError) as info:
        client(stack).chat.completions.create(model="mistral-small", messages=MESSAGES, user="u1")
    assert isinstance(info.value.body, dict) and info.value.body["param"] == "user"
    assert mistral.received == []  # refused before any upstream call


def test_lenient_model_drops_it_and_says_so(stack: Stack, mistral: FakeMistral) -> None:
    mistral.reset()
    response = client(stack).chat.completions.with_raw_response.create(
        model="mistral-lenient", messages=MESSAGES, user="u1", logprobs=True
    )
    assert response.parse().choices[0].message.content == TEXT
    assert set(response.headers["x-interlock-dropped-params"].split(",")) == {"user", "logprobs"}
    [sent] = mistral.received
    assert "user" not in sent.json and "logprobs" not in sent.json
