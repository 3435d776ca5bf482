"""Golden tests: canonical OpenAI chat requests -> Anthropic Messages requests (and settings)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from core.providers.adapters import load_adapter
from core.providers.adapters.anthropic import ADAPTER, PARAMS
from core.providers.adapters.base import ProviderError, Target
from shared.config import ProviderConfig
from shared.configparse import ConfigError
from shared.errors import FailureClass
from tests.support.providers import provider_of


def provider(options: dict[str, Any] | None = None, **extra: Any) -> ProviderConfig:
    fields: dict[str, Any] = {
        "name": "claude",
        "kind": "anthropic",
        "base_url": None,
        "api_keys": ("sk-ant-test",),
        "headers": {},
        "timeout_s": None,
        "allow_any_model": True,
        "options": options or {},
    }
    fields.update(extra)
    return ProviderConfig(**fields)


def target(model: str = "claude-sonnet-4-5", **kwargs: Any) -> Target:
    return Target(provider_of(provider(**kwargs)), model, "sk-ant-test")


def build(canonical: dict[str, Any], tgt: Target | None = None) -> dict[str, Any]:
    request = ADAPTER.build_request(canonical, tgt or target())
    body: dict[str, Any] = orjson.loads(request.body)
    return body


def rejected(canonical: dict[str, Any], tgt: Target | None = None) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        ADAPTER.build_request(canonical, tgt or target())
    assert info.value.status == 400
    assert info.value.failure_class is FailureClass.CLIENT_ERROR
    return info.value


USER = {"role": "user", "content": "Hi"}


def test_registered_under_kind_anthropic() -> None:
    assert load_adapter("anthropic", "providers.x.kind") is ADAPTER


def test_minimal_request_url_headers_and_default_max_tokens() -> None:
    request = ADAPTER.build_request({"model": "alias", "messages": [USER]}, target())
    assert request.method == "POST"
    assert request.url == "https://api.anthropic.com/v1/messages"
    assert request.headers == {
        "content-type": "application/json",
        "accept": "application/json",
        "anthropic-version": "2023-06-01",
        "x-api-key": "sk-ant-test",
    }
    assert orjson.loads(request.body) == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 8192,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    }


def test_streaming_request_and_custom_settings() -> None:
    tgt = target(
        base_url="http://127.0.0.1:9/anthropic",
        headers={"x-custom": "1"},
        options={"version": "2024-01-01", "beta": ["a-1", "b-2"], "default_max_tokens": 777},
    )
    request = ADAPTER.build_request(
        {"model": "m", "messages": [USER], "stream": True, "stream_options": {}}, tgt
    )
    assert request.url == "http://127.0.0.1:9/anthropic/v1/messages"
    assert request.headers["accept"] == "text/event-stream"
    assert request.headers["anthropic-version"] == "2024-01-01"
    assert request.headers["anthropic-beta"] == "a-1,b-2"
    assert request.headers["x-custom"] == "1"
    body = orjson.loads(request.body)
    assert body["stream"] is True and body["max_tokens"] == 777
    assert "stream_options" not in body


def test_base_url_ending_in_v1_is_not_doubled() -> None:
    request = ADAPTER.build_request(
        {"model": "m", "messages": [USER]}, target(base_url="https://proxy.example/v1")
    )
    assert request.url == "https://proxy.example/v1/messages"


def test_legacy_claude_3_default_max_tokens() -> None:
    assert (
        build({"model": "m", "messages": [USER]}, target("claude-3-haiku-20240307"))["max_tokens"]
        == 4096
    )


def test_system_and_developer_messages_become_top_level_system() -> None:
    body = build(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
                USER,
            ],
        }
    )
    assert body["system"] == [
        {"type": "text", "text": "Be brief."},
        {"type": "text", "text": "Use French."},
    ]
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    single = build({"model": "m", "messages": [{"role": "system", "content": "Solo."}, USER]})
    assert single["system"] == "Solo."


def test_cache_control_on_parts_is_kept() -> None:
    cache = {"type": "ephemeral"}
    doc = "Long doc. " * 400  # above the model's minimum cacheable prefix
    body = build(
        {
            "model": "m",
            "messages": [
                {
                    "role": "system",
                    "content": [{"type": "text", "text": doc, "cache_control": cache}],
                },
                {**USER, "cache_control": {"type": "ephemeral", "ttl": "1h"}},
            ],
        }
    )
    assert body["system"] == [{"type": "text", "text": doc, "cache_control": cache}]
    # A mark on a message goes to its last block; a 1h one after a 5m one is shortened.
    assert body["messages"][0]["content"][-1]["cache_control"] == cache


def test_cache_control_below_the_minimum_is_dropped() -> None:
    cache = {"type": "ephemeral"}
    system = {
        "role": "system",
        "content": [{"type": "text", "text": "Short", "cache_control": cache}],
    }
    body = build({"model": "m", "messages": [system, USER]})
    assert body["system"] == "Short"


def test_multi_turn_merges_consecutive_same_roles() -> None:
    body = build(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "one"},
                {"role": "user", "content": "two"},
                {"role": "assistant", "content": "three"},
                {"role": "assistant", "content": ""},  # nothing to send: skipped
                {"role": "assistant", "content": [{"type": "text", "text": "four"}]},
                {"role": "user", "content": "five"},
            ],
        }
    )
    assert body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
        },
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "three"}, {"type": "text", "text": "four"}],
        },
        {"role": "user", "content": [{"type": "text", "text": "five"}]},
    ]


def test_images_data_url_and_remote_url() -> None:
    body = build(
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Compare"},
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/png;base64,iVBORw0K"},
                        },
                        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                    ],
                }
            ],
        }
    )
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "Compare"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


@pytest.mark.parametrize(
    "url", ["ftp://example.com/a.png", "data:image/png,notbase64", "file:///etc/passwd"]
)
def test_unusable_image_urls_are_rejected(url: str) -> None:
    message = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}
    error = rejected({"model": "m", "messages": [USER, message]})
    assert error.param == "messages"
    assert "messages[1].content[0]" in error.message


def test_pdf_file_part_becomes_document_block() -> None:
    part = {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0x"}}
    body = build({"model": "m", "messages": [{"role": "user", "content": [part]}]})
    assert body["messages"][0]["content"] == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"},
        }
    ]
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    assert rejected({"model": "m", "messages": [{"role": "user", "content": [audio]}]}).param == (
        "messages[0].content[0]"
    )


TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {"type": "function", "function": {"name": "now", "strict": True}},
]


def test_tools_and_default_tool_choice() -> None:
    body = build({"model": "m", "messages": [USER], "tools": TOOLS})
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": TOOLS[0]["function"]["parameters"],
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}, "strict": True},
    ]
    assert "tool_choice" not in body  # Anthropic's default is auto


def test_strict_tools_dropped_without_structured_outputs() -> None:
    tgt = target(options={"structured_outputs": False})
    assert (
        "strict" not in build({"model": "m", "messages": [USER], "tools": TOOLS}, tgt)["tools"][1]
    )


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
        ("auto", True, {"type": "auto"}),
    ],
)
def test_tool_choice_mapping(choice: Any, parallel: bool | None, expected: dict[str, Any]) -> None:
    canonical: dict[str, Any] = {"model": "m", "messages": [USER], "tools": TOOLS}
    if choice is not None:
        canonical["tool_choice"] = choice
    if parallel is not None:
        canonical["parallel_tool_calls"] = parallel
    assert build(canonical)["tool_choice"] == expected


def test_bad_tools_are_rejected_with_their_param() -> None:
    assert rejected({"model": "m", "messages": [USER], "tool_choice": "required"}).param == (
        "tool_choice"
    )
    hosted = [{"type": "web_search"}]
    assert rejected({"model": "m", "messages": [USER], "tools": hosted}).param == "tools[0].type"
    nameless = [{"type": "function", "function": {"description": "x"}}]
    assert rejected({"model": "m", "messages": [USER], "tools": nameless}).param == (
        "tools[0].function.name"
    )
    odd = {"model": "m", "messages": [USER], "tools": TOOLS, "tool_choice": {"type": "x"}}
    assert rejected(odd).param == "tool_choice"


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_tool_call_round_trip_messages() -> None:
    body = build(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "Weather and time?"},
                {
                    "role": "assistant",
                    "content": "Checking.",
                    "tool_calls": [
                        tool_call("toolu_1", "get_weather", '{"city": "Paris"}'),
                        tool_call("toolu_2", "now", ""),
                    ],
                },
                {"role": "tool", "tool_call_id": "toolu_1", "content": "Sunny"},
                {
                    "role": "tool",
                    "tool_call_id": "toolu_2",
                    "content": [{"type": "text", "text": "12:00"}],
                },
                {"role": "user", "content": "Thanks"},
            ],
        }
    )
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather and time?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [{"type": "text", "text": "12:00"}],
                },
                {"type": "text", "text": "Thanks"},
            ],
        },
    ]


def test_tool_results_lead_their_user_turn() -> None:
    body = build(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": None, "tool_calls": [tool_call("t1", "f", "{}")]},
                {"role": "user", "content": "also this"},
                {"role": "tool", "tool_call_id": "t1", "content": "done"},
            ],
        }
    )
    assert [b["type"] for b in body["messages"][2]["content"]] == ["tool_result", "text"]


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]", '"text"'])
def test_invalid_tool_arguments_name_the_message(arguments: str) -> None:
    messages = [
        USER,
        {"role": "assistant", "content": None, "tool_calls": [tool_call("t", "f", arguments)]},
        {"role": "tool", "tool_call_id": "t", "content": "x"},
    ]
    error = rejected({"model": "m", "messages": messages})
    assert error.param == "messages[1].tool_calls[0].function.arguments"
    assert "messages[1]" in error.message


def test_tool_message_needs_its_call_id_and_function_role_is_rejected() -> None:
    assert rejected({"model": "m", "messages": [USER, {"role": "tool", "content": "x"}]}).param == (
        "messages[1].tool_call_id"
    )
    legacy = {"role": "function", "name": "f", "content": "x"}
    assert rejected({"model": "m", "messages": [USER, legacy]}).param == "messages[1].role"


def test_sampling_stop_and_user() -> None:
    body = build(
        {
            "model": "m",
            "messages": [USER],
            "max_tokens": 50,
            "temperature": 1.7,
            "top_p": 0.9,
            "stop": "END",
            "user": "tenant-user-42",
        }
    )
    assert body["max_tokens"] == 50
    assert body["temperature"] == 1.0  # clamped to Anthropic's range
    assert body["top_p"] == 0.9
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "tenant-user-42"}
    listed = build(
        {"model": "m", "messages": [USER], "stop": ["a", "b"], "max_completion_tokens": 9}
    )
    assert listed["stop_sequences"] == ["a", "b"]
    assert listed["max_tokens"] == 9
    assert rejected({"model": "m", "messages": [USER], "stop": 3}).param == "stop"


def test_response_format_json_schema_uses_structured_outputs() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    body = build(
        {
            "model": "m",
            "messages": [USER],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "strict": True, "schema": schema},
            },
        }
    )
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "output_config" not in build(
        {"model": "m", "messages": [USER], "response_format": {"type": "text"}}
    )
    error = rejected({"model": "m", "messages": [USER], "response_format": {"type": "json_object"}})
    assert error.param == "response_format"


@pytest.mark.parametrize(
    ("effort", "max_tokens", "expected_budget", "expected_max"),
    [
        ("low", None, 1024, 1024 + 8192),
        ("medium", None, 4096, 4096 + 8192),
        ("high", 20000, 16384, 20000),
        ("high", 5000, 4999, 5000),  # the budget is part of max_tokens on both APIs
        ("xhigh", None, 16384, 16384 + 8192),
    ],
)
def test_reasoning_effort_maps_to_thinking_budget(
    effort: str, max_tokens: int | None, expected_budget: int, expected_max: int
) -> None:
    canonical: dict[str, Any] = {"model": "m", "messages": [USER], "reasoning_effort": effort}
    if max_tokens:
        canonical["max_tokens"] = max_tokens
    body = build(canonical)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": expected_budget}
    assert body["max_tokens"] == expected_max


def test_reasoning_effort_edges() -> None:
    for effort in ("none", "minimal"):
        assert "thinking" not in build(
            {"model": "m", "messages": [USER], "reasoning_effort": effort}
        )
    too_small = {"model": "m", "messages": [USER], "reasoning_effort": "low", "max_tokens": 500}
    assert rejected(too_small).param == "max_tokens"
    assert rejected({"model": "m", "messages": [USER], "reasoning_effort": "max"}).param == (
        "reasoning_effort"
    )
    custom = target(options={"thinking_budgets": {"low": 2048}})
    body = build({"model": "m", "messages": [USER], "reasoning_effort": "low"}, custom)
    assert body["thinking"]["budget_tokens"] == 2048


def test_thinking_blocks_on_assistant_messages_are_sent_back_first() -> None:
    messages = [
        USER,
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "hmm",
            "thinking_blocks": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig=="},
                {"type": "redacted_thinking", "data": "opaque"},
            ],
            "tool_calls": [tool_call("t", "f", "{}")],
        },
        {"role": "tool", "tool_call_id": "t", "content": "ok"},
    ]
    body = build({"model": "m", "messages": messages})
    assert body["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "hmm", "signature": "sig=="},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "tool_use", "id": "t", "name": "f", "input": {}},
    ]


def test_capabilities_declare_what_is_mapped() -> None:
    caps = ADAPTER.capabilities(target())
    assert caps.params == PARAMS
    assert {"n", "seed", "logprobs", "frequency_penalty"}.isdisjoint(caps.params)
    assert caps.image_urls and caps.vision and caps.tools and caps.stream
    assert caps.json_schema and not caps.json_object
    assert not ADAPTER.capabilities(target(options={"structured_outputs": False})).json_schema


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"version": ""}, "version"),
        ({"beta": [1]}, "beta"),
        ({"default_max_tokens": 0}, "default_max_tokens"),
        ({"default_max_tokens": True}, "default_max_tokens"),
        ({"structured_outputs": "yes"}, "structured_outputs"),
        ({"thinking_budgets": {"low": 10}}, "thinking_budgets.low"),
        ({"thinking_budgets": {"max": 2048}}, "thinking_budgets.max"),
        ({"thinking_budgets": 5}, "thinking_budgets"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_check_provider_names_the_bad_option(options: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        ADAPTER.check_provider(provider(options))
    assert str(info.value).startswith(f"providers.claude.options.{key}:")


def test_check_provider_accepts_valid_options() -> None:
    ADAPTER.check_provider(
        provider(
            {
                "version": "2023-06-01",
                "beta": "prompt-caching-2024-07-31",
                "default_max_tokens": 1000,
                "structured_outputs": False,
                "thinking_budgets": {"low": 1024, "high": 30000},
            }
        )
    )
