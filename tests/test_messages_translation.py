"""Golden tests for the pure Messages translation: validation, request, response and planning."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from core.api.messages.plan import Direct
from core.api.messages.plan import plan_messages as plan
from core.api.messages.request import to_canonical
from core.api.messages.response import anthropic_usage, message_id, to_message
from core.api.messages.validate import validate_request
from core.providers.adapters.base import Capabilities, Target
from core.routing.planning import Attempt
from core.routing.registry import Candidate, Route
from shared.config import ProviderConfig
from shared.errors import GatewayError
from tests.support.providers import provider_of

USER = [{"role": "user", "content": "hi"}]


def request(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 64, "messages": USER, **fields}


# --- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"max_tokens": 5, "messages": USER}, "model"),
        ({"model": "m", "messages": USER}, "max_tokens"),
        (request(max_tokens=0), "max_tokens"),
        (request(max_tokens=True), "max_tokens"),
        (request(max_tokens="5"), "max_tokens"),
        ({"model": "m", "max_tokens": 5}, "messages"),
        (request(messages=[]), "messages"),
        (request(messages={"role": "user"}), "messages"),
        (request(messages=["hi"]), "messages[0]"),
        (request(messages=[*USER, {"role": "system", "content": "x"}]), "messages[1].role"),
        (request(messages=[{"role": "user"}]), "messages[0].content"),
        (request(messages=[{"role": "user", "content": 5}]), "messages[0].content"),
        (
            request(messages=[{"role": "user", "content": [{"text": "x"}]}]),
            "messages[0].content[0]",
        ),
        (request(system=5), "system"),
        (request(system=[{"type": "image"}]), "system[0]"),
        (request(stream="yes"), "stream"),
        (request(tools={"name": "x"}), "tools"),
        (request(tools=["x"]), "tools[0]"),
        (request(tool_choice="auto"), "tool_choice"),
    ],
)
def test_validation_names_the_field(payload: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as info:
        validate_request(payload)
    assert info.value.status == 400
    assert info.value.param == param
    assert info.value.message.startswith(param) or param == "model"


def test_validation_accepts_a_full_request() -> None:
    payload = request(
        system=[{"type": "text", "text": "be brief"}],
        stream=True,
        tools=[{"name": "t", "input_schema": {"type": "object"}}],
        tool_choice={"type": "auto"},
    )
    assert validate_request(payload) is True
    assert validate_request(request()) is False


# --- request ----------------------------------------------------------------------------

PNG = "iVBORw0KGgo="
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}

FULL_REQUEST: dict[str, Any] = {
    "model": "claude-x",
    "max_tokens": 300,
    "system": [
        {"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Answer in English."},
    ],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these images?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "Let me check the weather."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_2",
                    "name": "get_weather",
                    "input": {"city": "Rome"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [
                        {"type": "text", "text": "22C"},
                        {"type": "image", "source": {"type": "url", "url": "https://e.com/m.png"}},
                    ],
                    "is_error": False,
                },
                {"type": "text", "text": "Which is warmer?"},
            ],
        },
        {"role": "assistant", "content": "Rome."},
        {"role": "user", "content": [{"type": "text", "text": "Thanks"}]},
    ],
    "tools": [
        {"name": "get_weather", "description": "Weather by city", "input_schema": SCHEMA},
        {"type": "custom", "name": "noop", "input_schema": {"type": "object"}},
    ],
    "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    "stop_sequences": ["END"],
    "temperature": 0.2,
    "top_p": 0.9,
    "top_k": 40,
    "metadata": {"user_id": "user-42"},
    "thinking": {"type": "enabled", "budget_tokens": 2048},
    "service_tier": "auto",
    "stream": True,
}

EXPECTED_CANONICAL: dict[str, Any] = {
    "model": "claude-x",
    "messages": [
        {  # a marked system prompt keeps its blocks, so the mark keeps its position
            "role": "system",
            "content": [
                {"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Answer in English."},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these images?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Let me check the weather.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "toolu_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "22C"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "https://e.com/m.png"}},
                {"type": "text", "text": "Which is warmer?"},
            ],
        },
        {"role": "assistant", "content": "Rome."},
        {"role": "user", "content": "Thanks"},
    ],
    "max_tokens": 300,
    "stream": True,
    "temperature": 0.2,
    "top_p": 0.9,
    "stop": ["END"],
    "user": "user-42",
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather by city",
                "parameters": SCHEMA,
            },
        },
        {"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}},
    ],
    "tool_choice": "required",
    "parallel_tool_calls": False,
}


def test_request_translation_golden() -> None:
    translated = to_canonical(FULL_REQUEST)
    assert translated.canonical == EXPECTED_CANONICAL
    assert translated.optional == {"top_k": 40}
    assert translated.hints == {"reasoning_effort": ("thinking", "low")}
    assert translated.unsupported == ()


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "noop"}, {"type": "function", "function": {"name": "noop"}}),
    ],
)
def test_tool_choice_mapping(choice: dict[str, Any], expected: Any) -> None:
    tools = [{"name": "noop", "input_schema": {"type": "object"}}]
    canonical = to_canonical(request(tools=tools, tool_choice=choice)).canonical
    assert canonical["tool_choice"] == expected
    assert "parallel_tool_calls" not in canonical


@pytest.mark.parametrize(
    ("thinking", "effort"),
    [
        ({"type": "enabled", "budget_tokens": 1024}, "low"),
        ({"type": "enabled", "budget_tokens": 8000}, "medium"),
        ({"type": "enabled", "budget_tokens": 32000}, "high"),
        ({"type": "adaptive"}, "medium"),
        ({"type": "disabled"}, None),
    ],
)
def test_thinking_becomes_a_reasoning_effort_hint(thinking: dict[str, Any], effort: str) -> None:
    hints = to_canonical(request(thinking=thinking)).hints
    assert hints.get("reasoning_effort") == (("thinking", effort) if effort else None)


def test_assistant_with_only_tool_use_has_null_content_and_pdf_becomes_a_file_part() -> None:
    messages = [
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t"},
                {
                    "type": "document",
                    "title": "r.pdf",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
                },
            ],
        },
    ]
    out = to_canonical(request(messages=messages)).canonical["messages"]
    assert out[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }
    assert out[2] == {"role": "tool", "tool_call_id": "t", "content": ""}
    assert out[3] == {
        "role": "user",
        "content": [
            {
                "type": "file",
                "file": {"filename": "r.pdf", "file_data": "data:application/pdf;base64,JVBE"},
            }
        ],
    }


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        (
            {"messages": [{"role": "user", "content": [{"type": "search_result"}]}]},
            "messages[0].content[0].type",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages[0].content[0].text",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "file"}}]}
                ]
            },
            "messages[0].content[0].source",
        ),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
        ({"tools": [{"name": "x"}]}, "tools[0].input_schema"),
        ({"thinking": {"type": "enabled"}}, "thinking"),
        ({"stop_sequences": "END"}, "stop_sequences"),
    ],
)
def test_untranslatable_content_is_a_400_naming_it(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as info:
        to_canonical(request(**fields))
    assert info.value.status == 400 and info.value.param == param


def test_unknown_fields_are_listed_not_guessed() -> None:
    translated = to_canonical(request(mcp_servers=[], service_tier="auto"))
    assert translated.unsupported == ("mcp_servers",)
    assert "mcp_servers" not in translated.canonical


# --- response ---------------------------------------------------------------------------


def completion(message: dict[str, Any], finish: str, **choice: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-x",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, **choice}],
        "usage": {
            "prompt_tokens": 1600,
            "completion_tokens": 50,
            "total_tokens": 1650,
            "prompt_tokens_details": {"cached_tokens": 1111, "cache_creation_tokens": 418},
        },
    }


def test_response_translation_golden() -> None:
    message = {
        "role": "assistant",
        "reasoning_content": "Think first.",
        "content": "Checking.",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    }
    out = to_message(completion(message, "tool_calls"), "msg_fallback", "fallback", ())
    assert out == {
        "id": "msg_abc",
        "type": "message",
        "role": "assistant",
        "model": "gpt-x",
        "content": [
            {"type": "thinking", "thinking": "Think first.", "signature": ""},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 71,
            "cache_creation_input_tokens": 418,
            "cache_read_input_tokens": 1111,
            "output_tokens": 50,
        },
    }
    anthropic.types.Message.model_validate(out)  # the SDK's own type accepts it


@pytest.mark.parametrize(
    ("finish", "reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_stop_reason_mapping(finish: str | None, reason: str) -> None:
    out = to_message(
        completion({"role": "assistant", "content": "x"}, finish),  # type: ignore[arg-type]
        "msg_f",
        "m",
        (),
    )
    assert out["stop_reason"] == reason
    anthropic.types.Message.model_validate(out)


def test_stop_sequence_reported_when_the_host_names_it() -> None:
    answer = completion({"role": "assistant", "content": "x"}, "stop", stop_reason="END")
    out = to_message(answer, "msg_f", "m", ("END",))
    assert (out["stop_reason"], out["stop_sequence"]) == ("stop_sequence", "END")
    assert to_message(answer, "msg_f", "m", ())["stop_reason"] == "end_turn"


def test_refusal_and_malformed_arguments_are_kept() -> None:
    refused = to_message(
        completion({"role": "assistant", "content": None, "refusal": "I can't."}, "stop"),
        "msg_f",
        "m",
        (),
    )
    assert refused["content"] == [{"type": "text", "text": "I can't."}]
    assert refused["stop_reason"] == "refusal"
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
    broken = to_message(
        completion({"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"),
        "msg_f",
        "m",
        (),
    )
    assert broken["content"][0]["input"] == {"_raw_arguments": "{oops"}
    anthropic.types.Message.model_validate(broken)


def test_usage_and_ids() -> None:
    assert anthropic_usage(None) == {
        "input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 0,
    }
    assert anthropic_usage({"prompt_tokens": 10, "completion_tokens": 3})["input_tokens"] == 10
    assert message_id("chatcmpl-xyz", "msg_f") == "msg_xyz"
    assert message_id("msg_keep", "msg_f") == "msg_keep"
    assert message_id(None, "msg_f") == "msg_f"


# --- planning ---------------------------------------------------------------------------


def candidate(name: str, kind: str, caps: Capabilities | None = None) -> Candidate:
    provider = ProviderConfig(name, kind, None, ("k",), {}, None, False)
    target = Target(provider_of(provider), f"{name}-model", "k")
    return Candidate(target, object(), caps or Capabilities())  # type: ignore[arg-type]


def route(*candidates: Candidate, strict: bool = True) -> Route:
    return Route("r", candidates, strict, False)


DECLARES_TOP_K = Capabilities(params=frozenset({"max_tokens", "top_k"}))
NO_EFFORT = Capabilities(params=frozenset({"max_tokens", "temperature"}))


def test_top_k_goes_only_to_targets_that_declare_it() -> None:
    steps = plan(
        route(candidate("a", "openai"), candidate("g", "gemini", DECLARES_TOP_K)), request(top_k=5)
    )
    [attempt] = steps  # the strict route skips the target that cannot take top_k
    assert isinstance(attempt, Attempt)
    assert attempt.target.provider.name == "g" and attempt.payload["top_k"] == 5


def test_strict_route_rejects_what_no_target_takes_and_lenient_drops_it() -> None:
    with pytest.raises(GatewayError) as info:
        plan(route(candidate("a", "openai")), request(top_k=5))
    assert info.value.param == "top_k" and info.value.status == 400
    [attempt] = plan(
        route(candidate("a", "openai"), strict=False), request(top_k=5, mcp_servers=[])
    )
    assert isinstance(attempt, Attempt)
    assert "top_k" not in attempt.payload
    assert attempt.dropped == ("top_k", "mcp_servers")


def test_thinking_hint_is_dropped_where_it_cannot_be_taken() -> None:
    thinking = {"type": "enabled", "budget_tokens": 20000}
    first, second = plan(
        route(candidate("a", "openai"), candidate("b", "x", NO_EFFORT)), request(thinking=thinking)
    )
    assert isinstance(first, Attempt) and isinstance(second, Attempt)
    assert first.payload["reasoning_effort"] == "high" and first.dropped == ()
    assert "reasoning_effort" not in second.payload and second.dropped == ("thinking",)


def test_mixed_route_keeps_order() -> None:
    steps = plan(
        route(
            candidate("c1", "anthropic"),
            candidate("o1", "openai"),
            candidate("o2", "openai"),
            candidate("c2", "anthropic"),
        ),
        request(),
    )
    assert [type(s) for s in steps] == [Direct, Attempt, Attempt, Direct]
    assert [s.target.provider.name for s in steps] == ["c1", "o1", "o2", "c2"]


def test_anthropic_targets_serve_what_translation_cannot() -> None:
    server_tool = {"tools": [{"type": "web_search_20250305", "name": "web_search"}]}
    steps = plan(
        route(candidate("o", "openai"), candidate("c", "anthropic")), request(**server_tool)
    )
    assert [type(s) for s in steps] == [Direct]
    with pytest.raises(GatewayError) as info:
        plan(route(candidate("o", "openai")), request(**server_tool))
    assert info.value.param == "tools[0].type"


def test_cache_marks_keep_their_position_and_ttl() -> None:
    hour = {"type": "ephemeral", "ttl": "1h"}
    payload: dict[str, Any] = {
        "model": "claude-x",
        "max_tokens": 10,
        "tools": [{"name": "t", "input_schema": {"type": "object"}, "cache_control": hour}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "doc", "cache_control": hour}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "calling"},
                    {
                        "type": "tool_use",
                        "id": "tu_1",
                        "name": "t",
                        "input": {},
                        "cache_control": hour,
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "tu_1",
                        "content": "42",
                        "cache_control": hour,
                    },
                    {"type": "text", "text": "and?"},
                ],
            },
        ],
    }
    canonical = to_canonical(payload).canonical
    assert canonical["tools"][0]["cache_control"] == hour
    assert canonical["messages"][0]["content"] == [
        {"type": "text", "text": "doc", "cache_control": hour}
    ]
    assert canonical["messages"][1]["cache_control"] == hour
    assert canonical["messages"][2] == {
        "role": "tool",
        "tool_call_id": "tu_1",
        "content": "42",
        "cache_control": hour,
    }
    assert "cache_control" not in canonical["messages"][3]
    bad = {
        **payload,
        "tools": [{**payload["tools"][0], "cache_control": {"type": "ephemeral", "ttl": "9m"}}],
    }
    with pytest.raises(GatewayError) as refused:
        to_canonical(bad)
    assert refused.value.param == "tools[0].cache_control.ttl"
