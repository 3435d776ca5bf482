"""The pure pieces behind input hardening: the model-name rule, reservation clamps, the JSON
depth cap, schema checks, the mock's bounded schema values and the translation backstop."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.api.embeddings.request import estimate_input_tokens, validate_embeddings
from core.api.validate import MAX_JSON_DEPTH, parse_json_object, require_model, validate_chat
from core.limits.admission import estimate_tokens
from core.providers.adapters.base import ProviderError, Target
from core.providers.mock_schema import MAX_BYTES, schema_instance
from core.providers.upstream import translating
from core.wire.tokens import MAX_RESERVATION_TOKENS
from shared.config import ProviderConfig
from shared.errors import FailureClass, GatewayError
from shared.names import MAX_MODEL_NAME_LENGTH, model_name_problem
from tests.support.providers import provider_of

REAL_IDS = [
    "gpt-4o-2024-08-06",
    "ft:gpt-4o-mini:org:custom:id",
    "anthropic.claude-3-5-sonnet-20240620-v1:0",
    "models/gemini-1.5-pro",
    "accounts/fireworks/models/llama-v3p1-8b-instruct",
    "meta-llama/Llama-3.1-8B-Instruct",
    "@cf/meta/llama-3-8b-instruct",
    "llama3.2:latest",
    "openai/gpt-4o:free",
    "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20240620-v1:0",
    "gpt-3.5-turbo",
]


@pytest.mark.parametrize("name", REAL_IDS)
def test_real_model_ids_fit_the_rule(name: str) -> None:
    assert model_name_problem(name) is None


@pytest.mark.parametrize(
    "name",
    [
        "",
        " gpt",
        "gpt 4",
        "a\tb",
        "a\x00",
        "a\x7f",
        "é",
        "a?b",
        "a#b",
        "a%2e",
        "../x",
        "a/./b",
        "a/..",
        "x" * (MAX_MODEL_NAME_LENGTH + 1),
    ],
)
def test_odd_model_names_break_the_rule(name: str) -> None:
    assert model_name_problem(name) is not None


def test_core_applies_the_same_rule() -> None:
    with pytest.raises(GatewayError) as caught:
        require_model({"model": "mock/" + "a" * 9000})
    assert caught.value.status == 400 and caught.value.param == "model"
    assert caught.value.code == "invalid_model"
    assert require_model({"model": REAL_IDS[2]}) == REAL_IDS[2]


def test_reservations_never_exceed_the_ceiling() -> None:
    """max_tokens * n once made an estimate of 8.5e37 tokens; whatever slips past validation,
    the estimate stays within the ceiling."""
    messages = [{"role": "user", "content": "hi"}]
    for extreme in (2**63 - 1, 10**6, 1e38):
        payload = {"messages": messages, "max_tokens": extreme, "n": extreme}
        assert 0 < estimate_tokens(payload) <= MAX_RESERVATION_TOKENS
    assert estimate_tokens({"messages": messages, "max_tokens": 100}) < 200
    # An odd `system` in an OpenAI request is only counted when it is text.
    assert estimate_tokens({"messages": messages, "system": [{"text": 5}, "x"]}) > 0


def test_embedding_reservations_are_clamped() -> None:
    request = validate_embeddings({"model": "m", "input": [[1] * 900] * 2048})
    assert estimate_input_tokens(request) == 2048 * 900
    big = validate_embeddings({"model": "m", "input": [[1] * 2000] * 2048})
    assert estimate_input_tokens(big) == MAX_RESERVATION_TOKENS


def test_deep_json_is_refused_without_recursion() -> None:
    ok = b'{"a":' + b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1) + b"}"
    assert parse_json_object(ok)
    for depth in (MAX_JSON_DEPTH, 300, 1000):
        deep = b'{"a":' + b"[" * depth + b"]" * depth + b"}"
        with pytest.raises(GatewayError) as caught:
            parse_json_object(deep)
        assert caught.value.code == "invalid_json"


def _chat(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}


@pytest.mark.parametrize(
    ("schema", "param"),
    [
        ({"properties": {"a": {"items": 5}}}, "x.properties.a.items"),
        ({"anyOf": {}}, "x.anyOf"),
        ({"type": 5}, "x.type"),
        ({"minItems": -1}, "x.minItems"),
        ({"$defs": {"a": []}}, "x.$defs.a"),
        ({"enum": "a"}, "x.enum"),
    ],
)
def test_schema_shapes_are_checked(schema: dict[str, Any], param: str) -> None:
    from core.api.validate_tools import check_schema

    with pytest.raises(GatewayError) as caught:
        check_schema(schema, "x")
    assert caught.value.param == param


def test_valid_tool_requests_pass() -> None:
    schema = {"type": "object", "properties": {"a": {"type": ["string", "null"]}}, "items": [{}]}
    tool = {"type": "function", "function": {"name": "f", "parameters": schema, "strict": True}}
    assert validate_chat(
        _chat(tools=[tool], tool_choice="required", response_format={"type": "json_object"})
    ) == (False, False)


HOSTILE: list[Any] = [
    {"type": "array", "minItems": 10**9, "items": {"type": "array", "minItems": 10**9}},
    {"type": "string", "minLength": 10**9},
    {
        "$defs": {
            "n": {
                "type": "object",
                "required": ["a", "b"],
                "properties": {"a": {"$ref": "#/$defs/n"}, "b": {"$ref": "#/$defs/n"}},
            }
        },
        "$ref": "#/$defs/n",
    },
    {"type": "object", "required": [f"k{i}" * 50 for i in range(10_000)]},
    {"type": "array", "minItems": 16, "items": {"enum": ["x" * 100_000]}},
]


@pytest.mark.parametrize("schema", HOSTILE)
def test_mock_values_are_bounded(schema: Any) -> None:
    assert len(orjson.dumps(schema_instance(schema))) <= MAX_BYTES + 16_000


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(
            st.sampled_from(
                ["type", "items", "minItems", "properties", "required", "$ref", "enum"]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, database=None)
@given(json_values)
def test_mock_values_never_crash_or_grow(schema: Any) -> None:
    assert len(orjson.dumps(schema_instance(schema))) <= MAX_BYTES + 16_000


def test_translation_crash_is_a_logged_client_error(caplog: pytest.LogCaptureFixture) -> None:
    provider = ProviderConfig("p", "openai", None, ("k",), {}, None, False)
    target = Target(provider_of(provider), "m", None)
    adapter_input: dict[str, Any] = {}
    with (
        caplog.at_level(logging.ERROR),
        pytest.raises(ProviderError) as caught,
        translating(target.label),
    ):
        adapter_input.pop("missing")  # what an adapter bug looks like
    error = caught.value
    assert error.status == 400 and error.failure_class is FailureClass.CLIENT_ERROR
    assert error.code == "invalid_request" and "Traceback" not in error.message
    assert "KeyError" in caplog.text  # the operator gets the traceback


def test_edge_reads_model_under_the_same_rule() -> None:
    from edge.app import _peek_model

    assert _peek_model(b'{"model": "llama3.2:latest"}') == "llama3.2:latest"
    for name in ("a" * (MAX_MODEL_NAME_LENGTH + 1), "a b", "x/../y", "\u00e9"):
        with pytest.raises(GatewayError) as caught:
            _peek_model(orjson.dumps({"model": name}))
        assert caught.value.code == "invalid_model" and caught.value.param == "model"
