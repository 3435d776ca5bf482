"""Issue 8, findings 3, 4, 7b, 7c and 9: malformed or absurd input is a 400 naming the field.

Every case here was a 5xx (or an unbounded reservation, or a 4.7 s stall) before the fix. They
run through the real edge and core over loopback, against the mock and fake OpenAI and
Anthropic upstreams, so each adapter's translation path sees the same input.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from core.wire.tokens import MAX_CHOICES, MAX_OUTPUT_TOKENS
from shared.names import MAX_MODEL_NAME_LENGTH
from tests.support import raw
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_openai import FakeOpenAI
from tests.support.stack import Stack

MODELS = ("mock-1", "gpt-fake", "claude-fake")
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    openai_like, claude = FakeOpenAI().start(), FakeAnthropic().start()
    overrides = {
        "providers": {
            "mock": {"kind": "mock", "allow_any_model": True},
            "fake": {"kind": "openai", "base_url": openai_like.base_url, "api_key": "sk-v"},
            "claude": {"kind": "anthropic", "base_url": claude.url, "api_key": "sk-ant-v"},
        },
        "models": {
            "mock-1": {"provider": "mock", "model": "mock-1"},
            "mock-lenient": {"provider": "mock", "model": "mock-1", "params": "lenient"},
            "gpt-fake": {"provider": "fake", "model": "gpt-fake"},
            "claude-fake": {"provider": "claude", "model": "claude-test"},
        },
    }
    running = Stack(tmp_path_factory.mktemp("validation"), overrides).start()
    yield running
    running.stop()
    openai_like.stop()
    claude.stop()


def chat(stack: Stack, body: dict[str, Any] | bytes) -> raw.RawResponse:
    return raw.post(f"{stack.edge_url}/v1/chat/completions", body, stack.token())


def messages(stack: Stack, body: dict[str, Any]) -> raw.RawResponse:
    headers = {"x-api-key": stack.token(), "anthropic-version": "2023-06-01"}
    return raw.post(f"{stack.edge_url}/v1/messages", body, headers=headers)


def refused(response: raw.RawResponse, param: str) -> dict[str, Any]:
    assert response.status == 400, (response.status, response.body[:300])
    error = response.json()["error"]
    assert error["param"] == param, error
    return error  # type: ignore[no-any-return]


TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
MALFORMED: list[tuple[dict[str, Any], str]] = [
    ({"messages": [{"role": ["user"], "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": {"a": 1}, "content": "hi"}]}, "messages[0].role"),
    ({"response_format": "json_object"}, "response_format"),
    ({"response_format": ["json_object"]}, "response_format"),
    (
        {"tools": [TOOL], "tool_choice": {"type": "function", "function": "f"}},
        "tool_choice.function",
    ),
    ({"tools": 3}, "tools"),
    (
        {
            "tools": [
                {"type": "function", "function": {"name": "f", "parameters": {"properties": "x"}}}
            ]
        },
        "tools[0].function.parameters.properties",
    ),
    (
        {
            "tools": [
                {"type": "function", "function": {"name": "f", "parameters": {"required": [1]}}}
            ]
        },
        "tools[0].function.parameters.required",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
        "messages[0].content[0].text",
    ),
    ({"messages": [{"role": "user", "content": []}]}, "messages[0].content"),
    ({"temperature": "hot"}, "temperature"),
    ({"temperature": 3}, "temperature"),
    ({"top_p": [1]}, "top_p"),
    ({"stop": [1]}, "stop"),
]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(("change", "param"), MALFORMED)
def test_malformed_chat_fields_are_400_naming_the_field(
    stack: Stack, model: str, change: dict[str, Any], param: str
) -> None:
    refused(chat(stack, {"model": model, "messages": HI, **change}), param)


@pytest.mark.parametrize("model", MODELS)
def test_anthropic_empty_content_is_400(stack: Stack, model: str) -> None:
    body = {"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": []}]}
    response = messages(stack, body)
    assert response.status == 400, response.body[:300]
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"].startswith("messages[0].content")


def test_final_assistant_message_may_still_be_empty(stack: Stack) -> None:
    body = {
        "model": "mock-1",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}],
    }
    assert messages(stack, body).status == 200


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"max_tokens": 2**63 - 1, "n": 2**63 - 1}, "max_tokens"),
        ({"max_completion_tokens": MAX_OUTPUT_TOKENS + 1}, "max_completion_tokens"),
        ({"n": MAX_CHOICES + 1}, "n"),
        ({"n": 0}, "n"),
    ],
)
def test_absurd_counts_are_refused(stack: Stack, change: dict[str, Any], param: str) -> None:
    refused(chat(stack, {"model": "mock-1", "messages": HI, **change}), param)


def test_anthropic_absurd_max_tokens_is_refused(stack: Stack) -> None:
    body = {"model": "mock-1", "max_tokens": 2**63 - 1, "messages": HI}
    response = messages(stack, body)
    assert response.status == 400 and b"max_tokens" in response.body


def test_largest_allowed_counts_are_served(stack: Stack) -> None:
    body = {"model": "mock-1", "messages": HI, "max_tokens": MAX_OUTPUT_TOKENS, "n": MAX_CHOICES}
    assert chat(stack, body).status == 200


@pytest.mark.parametrize(
    "model",
    [
        "mock/" + "a" * (MAX_MODEL_NAME_LENGTH),  # over the cap by the prefix
        "mock/" + "a" * 9000,  # was served, billed, then a 502 at the edge (header limit)
        "mock/has space",
        "mock/line\r\nbreak",
        "mock/nul\x00",
        "mock/../../admin",
        "mock/é",
    ],
)
def test_bad_model_names_are_refused_at_the_edge(stack: Stack, model: str) -> None:
    error = refused(chat(stack, {"model": model, "messages": HI}), "model")
    assert error["code"] == "invalid_model"


def test_real_model_ids_pass_the_name_rule(stack: Stack) -> None:
    for name in (
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "ft:gpt-4o-mini:org:custom:id",
        "@cf/meta/llama-3-8b-instruct",
        "llama3.2:latest",
        "accounts/fireworks/models/llama-v3p1-8b-instruct",
    ):
        response = chat(stack, {"model": f"mock/{name}", "messages": HI})
        assert response.status == 200, (name, response.body[:200])
        assert response.headers["x-interlock-model"] == name


def test_json_nested_too_deep_is_400_not_a_serialiser_crash(stack: Stack) -> None:
    """orjson parses 1024 levels but serialises only 255: an adapter's dumps used to 500."""
    deep = b"[" * 300 + b"]" * 300
    body = (
        b'{"model":"gpt-fake","messages":[{"role":"user","content":"hi"}],"metadata":{"x":'
        + deep
        + b"}}"
    )
    response = chat(stack, body)
    assert response.status == 400 and response.json()["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("key", ["bad\r\nkey", "é", "x" * 65, "a b"])
def test_odd_parameter_names_are_refused(stack: Stack, key: str) -> None:
    """Lenient routes list dropped params in a response header; such names broke it (500)."""
    response = chat(stack, {"model": "mock-lenient", "messages": HI, key: 1})
    assert response.status == 400, response.body[:300]
    assert response.json()["error"]["code"] == "unknown_parameter"


def test_dropped_params_header_still_lists_real_names(stack: Stack) -> None:
    response = chat(stack, {"model": "mock-lenient", "messages": HI, "top_k": 3})
    assert response.status == 200


HOSTILE_SCHEMAS: list[dict[str, Any]] = [
    {"type": "array", "minItems": 100_000_000, "items": {"type": "string"}},
    {"type": "string", "minLength": 1_000_000_000},
    {  # 16 items at each of 8 levels would be 16**8 values without a node budget
        "$defs": {"n": {"type": "array", "minItems": 16, "items": {"$ref": "#/$defs/n"}}},
        "$ref": "#/$defs/n",
    },
    {  # the same without $ref: 16 items at each of 9 nested levels
        "type": "array",
        "minItems": 16,
        "items": {
            "type": "array",
            "minItems": 16,
            "items": {
                "type": "array",
                "minItems": 16,
                "items": {
                    "type": "array",
                    "minItems": 16,
                    "items": {
                        "type": "array",
                        "minItems": 16,
                        "items": {"type": "array", "minItems": 16},
                    },
                },
            },
        },
    },
    {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(20_000)}},
    {"type": "array", "minItems": 1000, "items": {"const": "x" * 10_000}},
]


@pytest.mark.parametrize("schema", HOSTILE_SCHEMAS)
def test_mock_answers_hostile_schemas_with_bounded_output(
    stack: Stack, schema: dict[str, Any]
) -> None:
    response_format = {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}
    body = {"model": "mock-1", "messages": HI, "response_format": response_format}
    response = chat(stack, body)
    assert response.status == 200, response.body[:300]
    content = response.json()["choices"][0]["message"]["content"]
    assert len(content) < 80_000
    orjson.loads(content)


def test_mock_tool_arguments_are_bounded_too(stack: Stack) -> None:
    schema = {"type": "object", "properties": {"a": HOSTILE_SCHEMAS[0]}, "required": ["a"]}
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    response = chat(stack, {"model": "mock-1", "messages": HI, "tools": [tool]})
    assert response.status == 200
    arguments = response.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert len(arguments) < 80_000


def test_odd_system_field_in_a_chat_request_does_not_break_the_estimate(stack: Stack) -> None:
    """The reservation estimate reads an Anthropic-style `system`; a non-text one was a 500."""
    response = chat(stack, {"model": "mock-1", "messages": HI, "system": [{"text": 5}]})
    assert response.status == 200, response.body[:300]
