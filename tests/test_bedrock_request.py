"""Golden tests: canonical (OpenAI) requests -> Converse request bodies and URLs."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from core.providers.adapters.base import ProviderError, Target
from core.providers.adapters.bedrock import ADAPTER
from core.providers.adapters.bedrock.request import RESPONSE_TOOL
from core.wire.eventstream import EventStreamDecoder
from shared.config import ProviderConfig
from shared.errors import FailureClass
from tests.support.providers import provider_of

PROVIDER = ProviderConfig(
    "aws", "bedrock", None, (), {"x-extra": "1"}, None, False, {"region": "eu-west-3"}
)
TARGET = Target(provider_of(PROVIDER), "anthropic.claude-3-haiku-20240307-v1:0", None)
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5E"
    "rkJggg=="
)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
WEATHER_SPEC = {
    "toolSpec": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "inputSchema": {
            "json": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            }
        },
    }
}


def body_of(canonical: dict[str, Any], target: Target = TARGET) -> dict[str, Any]:
    request = ADAPTER.build_request({"model": "m", **canonical}, target)
    parsed: dict[str, Any] = orjson.loads(request.body)
    return parsed


def client_error(canonical: dict[str, Any]) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        ADAPTER.build_request({"model": "m", **canonical}, TARGET)
    assert info.value.failure_class is FailureClass.CLIENT_ERROR
    assert info.value.status == 400
    return info.value


def test_url_headers_and_the_escaped_model_id() -> None:
    request = ADAPTER.build_request({"messages": [{"role": "user", "content": "hi"}]}, TARGET)
    assert request.method == "POST"
    # ':' stays as aiohttp will send it, so the signature covers the path AWS sees.
    assert request.url == (
        "https://bedrock-runtime.eu-west-3.amazonaws.com"
        "/model/anthropic.claude-3-haiku-20240307-v1:0/converse"
    )
    assert request.headers == {
        "content-type": "application/json",
        "accept": "application/json",
        "x-extra": "1",
    }
    streaming = ADAPTER.build_request(
        {"messages": [{"role": "user", "content": "hi"}], "stream": True},
        Target(
            provider_of(PROVIDER),
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.x-v1:0",
            None,
        ),
    )
    assert streaming.url == (
        "https://bedrock-runtime.eu-west-3.amazonaws.com/model/"
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile%2Fus.x-v1:0/converse-stream"
    )
    assert streaming.headers["accept"] == "application/vnd.amazon.eventstream"


def test_base_url_override_and_bearer_api_key() -> None:
    provider = ProviderConfig(
        "k",
        "bedrock",
        "http://127.0.0.1:9",
        ("bedrock-api-key",),
        {},
        None,
        False,
        {"region": "us-east-1"},  # required, as at start-up; the base URL overrides it
    )
    request = ADAPTER.build_request(
        {"messages": [{"role": "user", "content": "hi"}]},
        Target(provider_of(provider), "m.x-v1:0", "key-1"),
    )
    assert request.url == "http://127.0.0.1:9/model/m.x-v1:0/converse"
    assert request.headers["authorization"] == "Bearer key-1"
    assert ADAPTER.make_signer(ADAPTER.check_provider(provider)) is None


def test_full_conversation_golden() -> None:
    canonical = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "And this picture:"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "?"}]},
            {"role": "user", "content": "Thanks"},
            {"role": "assistant", "content": ""},  # empty turns are dropped, not sent blank
            {"role": "assistant", "content": None, "tool_calls": []},
        ],
        "max_tokens": 300,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": "END",
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
    }
    assert body_of(canonical) == {
        "system": [{"text": "Be brief."}, {"text": "Use metric units."}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"text": "Weather in Paris?"},
                    {"text": "And this picture:"},
                    {"image": {"format": "png", "source": {"bytes": PNG}}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"text": "Checking."},
                    {
                        "toolUse": {
                            "toolUseId": "call_1",
                            "name": "get_weather",
                            "input": {"city": "Paris"},
                        }
                    },
                    {"toolUse": {"toolUseId": "call_2", "name": "get_weather", "input": {}}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"toolResult": {"toolUseId": "call_1", "content": [{"text": "18 C, sunny"}]}},
                    {"toolResult": {"toolUseId": "call_2", "content": [{"text": "?"}]}},
                    {"text": "Thanks"},
                ],
            },
        ],
        "inferenceConfig": {
            "maxTokens": 300,
            "temperature": 0.2,
            "topP": 0.9,
            "stopSequences": ["END"],
        },
        "toolConfig": {"tools": [WEATHER_SPEC], "toolChoice": {"auto": {}}},
    }


def test_minimal_request_has_no_optional_sections() -> None:
    assert body_of({"messages": [{"role": "user", "content": "hi"}]}) == {
        "messages": [{"role": "user", "content": [{"text": "hi"}]}]
    }


def test_max_completion_tokens_and_stop_list() -> None:
    body = body_of(
        {
            "messages": [{"role": "user", "content": "hi"}],
            "max_completion_tokens": 50,
            "stop": ["a", "b"],
        }
    )
    assert body["inferenceConfig"] == {"maxTokens": 50, "stopSequences": ["a", "b"]}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, None),
        ("auto", {"auto": {}}),
        ("required", {"any": {}}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"tool": {"name": "get_weather"}},
        ),
    ],
)
def test_tool_choice_mapping(choice: Any, expected: Any) -> None:
    canonical: dict[str, Any] = {
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [WEATHER_TOOL],
    }
    if choice is not None:
        canonical["tool_choice"] = choice
    config = body_of(canonical)["toolConfig"]
    assert config["tools"] == [WEATHER_SPEC]
    assert config.get("toolChoice") == expected


def test_tool_choice_none_omits_tools() -> None:
    body = body_of(
        {
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [WEATHER_TOOL],
            "tool_choice": "none",
        }
    )
    assert "toolConfig" not in body


def test_tool_history_without_tools_still_declares_them() -> None:
    """Bedrock rejects toolUse/toolResult blocks unless a toolConfig is present."""
    history = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    assert body_of({"messages": history})["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "inputSchema": {"json": {"type": "object", "properties": {}}},
                }
            }
        ]
    }
    with_none = body_of({"messages": history, "tools": [WEATHER_TOOL], "tool_choice": "none"})
    assert with_none["toolConfig"] == {"tools": [WEATHER_SPEC]}  # declared, nothing forced


def test_response_format_json_schema_is_a_forced_tool() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    response_format = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    body = body_of(
        {"messages": [{"role": "user", "content": "hi"}], "response_format": response_format}
    )
    [spec] = body["toolConfig"]["tools"]
    assert spec["toolSpec"]["name"] == RESPONSE_TOOL
    assert spec["toolSpec"]["inputSchema"] == {"json": schema}
    assert body["toolConfig"]["toolChoice"] == {"tool": {"name": RESPONSE_TOOL}}
    with_tools = body_of(
        {
            "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_object"},
            "tools": [WEATHER_TOOL],
        }
    )
    names = [t["toolSpec"]["name"] for t in with_tools["toolConfig"]["tools"]]
    assert names == ["get_weather", RESPONSE_TOOL]
    assert with_tools["toolConfig"]["tools"][1]["toolSpec"]["inputSchema"] == {
        "json": {"type": "object"}
    }
    assert with_tools["toolConfig"]["toolChoice"] == {"any": {}}
    plain = body_of(
        {"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "text"}}
    )
    assert "toolConfig" not in plain


def test_cache_control_parts_become_cache_points() -> None:
    rules = "long rules. " * 400  # above the minimum cacheable prefix
    canonical = {
        "messages": [
            {
                "role": "system",
                "content": [
                    {"type": "text", "text": rules, "cache_control": {"type": "ephemeral"}}
                ],
            },
            {"role": "user", "content": "hi"},
        ]
    }
    sonnet = Target(TARGET.provider, "us.anthropic.claude-sonnet-4-5-20250929-v1:0", None)
    body = body_of(canonical, sonnet)
    assert body["system"] == [{"text": rules}, {"cachePoint": {"type": "default"}}]
    # A model that does not cache on Bedrock gets no cache point (Bedrock would refuse it).
    assert body_of(canonical)["system"] == [{"text": rules}]


@pytest.mark.parametrize(
    ("canonical", "param"),
    [
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
                    }
                ]
            },
            "messages",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "data:image/png,raw"}}
                        ],
                    }
                ]
            },
            "messages",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image_url",
                                "image_url": {"url": f"data:image/tiff;base64,{PNG}"},
                            }
                        ],
                    }
                ]
            },
            "messages",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}
                ]
            },
            "messages[0]",
        ),
        ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{oops"},
                            }
                        ],
                    }
                ]
            },
            "messages[0].tool_calls[0]",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        (
            {"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "web_search"}]},
            "tools",
        ),
        (
            {
                "messages": [{"role": "user", "content": "hi"}],
                "tool_choice": {"type": "allowed_tools"},
                "tools": [WEATHER_TOOL],
            },
            "tool_choice",
        ),
        ({"messages": [{"role": "user", "content": "hi"}], "stop": [1]}, "stop"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, "temperature"),
        (
            {
                "messages": [{"role": "user", "content": "hi"}],
                "response_format": {"type": "grammar"},
            },
            "response_format",
        ),
        (
            {
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "function": {"name": RESPONSE_TOOL}}],
            },
            "tools",
        ),
    ],
)
def test_unservable_input_is_a_client_error_naming_the_param(
    canonical: dict[str, Any], param: str
) -> None:
    assert client_error(canonical).param == param


def test_capabilities_declare_byte_images_and_mapped_params() -> None:
    caps = ADAPTER.capabilities(TARGET)
    assert caps.image_urls is False and caps.stream and caps.tools and caps.json_schema
    assert caps.params is not None
    assert {"temperature", "top_p", "max_tokens", "stop", "tools", "tool_choice"} <= caps.params
    assert not {"n", "seed", "logprobs", "parallel_tool_calls"} & caps.params
    assert isinstance(ADAPTER.decoder(), EventStreamDecoder)  # AWS event-stream framing
