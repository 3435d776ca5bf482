"""Client errors on POST /v1/responses through the edge and core: a 4xx in OpenAI's envelope
naming the Responses field (`tools[0].type`, `input[0].role`, `text.format.type`, ...), never a
5xx, whatever the shape of each field."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tests.support import raw
from tests.support.fake_openai import FakeOpenAI
from tests.support.stack import Stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI) -> Iterator[Stack]:
    overrides = {
        "providers": {"fake": {"kind": "openai", "base_url": fake.base_url, "api_key": "sk-up"}},
        "models": {"gpt-fake": {"provider": "fake", "model": "gpt-fake"}},
    }
    running = Stack(tmp_path_factory.mktemp("responses-errors"), overrides).start()
    yield running
    running.stop()


def post(stack: Stack, body: dict[str, Any]) -> raw.RawResponse:
    return raw.post(f"{stack.edge_url}/v1/responses", body, stack.token())


TOOL = {"type": "function", "name": "f"}
FORMAT = {"type": "json_schema", "name": "answer"}
BAD: list[tuple[dict[str, Any], int, str | None]] = [
    ({"model": "gpt-fake", "input": "x", "tools": [{"type": "web_search"}]}, 400, "tools[0].type"),
    ({"model": "gpt-fake"}, 400, "input"),
    ({"model": "gpt-fake", "input": 7}, 400, "input"),
    ({"model": "gpt-fake", "input": []}, 400, "input"),
    ({"model": "gpt-fake", "input": [{"type": "nope"}]}, 400, "input[0].type"),
    ({"model": "gpt-fake", "input": [{"role": "robot", "content": "x"}]}, 400, "input[0].role"),
    (
        {"model": "gpt-fake", "input": [{"role": "user", "content": [{"type": "input_file"}]}]},
        400,
        "input[0].content[0].type",
    ),
    ({"model": "gpt-fake", "input": "x", "max_output_tokens": 0}, 400, "max_output_tokens"),
    ({"model": "gpt-fake", "input": "x", "temperature": "hot"}, 400, "temperature"),
    (
        {"model": "gpt-fake", "input": "x", "tool_choice": {"type": "web_search"}},
        400,
        "tool_choice",
    ),
    (
        {"model": "gpt-fake", "input": "x", "text": {"format": {"type": "xml"}}},
        400,
        "text.format.type",
    ),
    ({"model": "gpt-fake", "input": "x", "reasoning": {"effort": "max"}}, 400, "reasoning.effort"),
    ({"model": "gpt-fake", "input": "x", "frobnicate": 1}, 400, "frobnicate"),
    ({"model": "gpt-fake", "input": "x", "store": "yes"}, 400, "store"),
    ({"model": "gpt-fake", "input": "x", "background": True}, 400, "background"),
    (
        {"model": "gpt-fake", "input": "x", "previous_response_id": "resp_nope"},
        404,
        "previous_response_id",
    ),
    ({"model": "gpt-fake", "input": "x", "previous_response_id": 5}, 400, "previous_response_id"),
    ({"model": "nope", "input": "x"}, 404, "model"),
    (
        {"model": "gpt-fake", "input": "x", "tools": [{**TOOL, "parameters": "x"}]},
        400,
        "tools[0].parameters",
    ),
    (
        {"model": "gpt-fake", "input": "x", "text": {"format": {**FORMAT, "schema": []}}},
        400,
        "text.format.schema",
    ),
    (
        {
            "model": "gpt-fake",
            "input": "x",
            "text": {"format": {**FORMAT, "schema": {"properties": []}}},
        },
        400,
        "text.format.schema.properties",
    ),
    (
        {"model": "gpt-fake", "input": [{"role": "user", "content": [7]}]},
        400,
        "input[0].content[0]",
    ),
]


@pytest.mark.parametrize(("body", "status", "param"), BAD)
def test_client_errors_name_the_field(
    stack: Stack, fake: FakeOpenAI, body: dict[str, Any], status: int, param: str | None
) -> None:
    before = len(fake.received)
    response = post(stack, body)
    assert response.status == status, response.body
    assert len(fake.received) == before  # refused by the gateway, never sent upstream
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param


def test_garbage_is_never_a_5xx(stack: Stack) -> None:
    shapes: list[Any] = [None, 1, "x", [], {}, [None], [{"role": "user"}], {"a": [1]}]
    for field in ("input", "tools", "tool_choice", "text", "reasoning", "metadata", "include"):
        for shape in shapes:
            body = {"model": "gpt-fake", "input": "x", field: shape, "store": False}
            status = raw.post(f"{stack.edge_url}/v1/responses", orjson.dumps(body), stack.token())
            assert status.status < 500, (field, shape, status.body)
