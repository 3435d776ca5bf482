"""Golden tests: canonical OpenAI chat requests -> Gemini generateContent requests."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from core.providers.adapters.base import ProviderError, Target, UpstreamRequest
from core.providers.adapters.gemini import ADAPTER
from core.providers.adapters.gemini.calls import signature_of, tool_call_id
from shared.config import ProviderConfig
from shared.errors import FailureClass
from tests.support.providers import provider_of

SIGNATURE = "CpwBAXLI2nx+lU6g/sWZ=="


def provider(
    options: dict[str, Any] | None = None,
    base_url: str | None = None,
    name: str = "gem",
    headers: dict[str, str] | None = None,
) -> ProviderConfig:
    return ProviderConfig(
        name=name,
        kind="gemini",
        base_url=base_url,
        api_keys=("AIza-key",),
        headers=headers or {},
        timeout_s=None,
        allow_any_model=True,
        options=options or {},
    )


STUDIO = provider()
VERTEX = provider({"vertex": {"project": "proj-1", "location": "europe-west4"}})


def build(
    canonical: dict[str, Any], model: str = "gemini-2.5-flash", prov: ProviderConfig = STUDIO
) -> tuple[UpstreamRequest, dict[str, Any]]:
    request = ADAPTER.build_request(
        {"model": "alias", **canonical}, Target(provider_of(prov), model, prov.api_keys[0])
    )
    body: dict[str, Any] = orjson.loads(request.body)
    return request, body


def body_of(canonical: dict[str, Any], model: str = "gemini-2.5-flash") -> dict[str, Any]:
    return build(canonical, model)[1]


def rejected(canonical: dict[str, Any], model: str = "gemini-2.5-flash") -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        build(canonical, model)
    assert caught.value.status == 400
    assert caught.value.failure_class is FailureClass.CLIENT_ERROR
    return caught.value


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": ["string", "null"], "enum": ["C", "F"]},
            },
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}


def test_full_conversation_golden() -> None:
    signed_id = tool_call_id("resp", 0, 0, SIGNATURE)
    canonical = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric."}]},
            {"role": "user", "content": "Hi"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                ],
            },
            {"role": "assistant", "content": "Let me check the weather."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": signed_id,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "call_plain",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": ""},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": signed_id, "content": '{"temp": 21}'},
            {"role": "tool", "tool_call_id": "call_plain", "content": "12:00"},
            {"role": "user", "content": "Thanks"},
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "temperature": 0.2,
        "top_p": 0.9,
        "max_completion_tokens": 256,
        "max_tokens": 999,  # max_completion_tokens wins, as with OpenAI
        "stop": "END",
        "n": 2,
        "seed": 7,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.3,
    }
    assert body_of(canonical) == {
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Use metric."}]},
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "Hi"},
                    {"text": "What is this?"},
                    {"inlineData": {"mimeType": "image/png", "data": "iVBORw0K"}},
                ],
            },
            {
                "role": "model",
                "parts": [
                    {"text": "Let me check the weather."},
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                        "thoughtSignature": SIGNATURE,
                    },
                    {"functionCall": {"name": "get_time", "args": {}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                    {"functionResponse": {"name": "get_time", "response": {"result": "12:00"}}},
                    {"text": "Thanks"},
                ],
            },
        ],
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "Weather for a city",
                        "parameters": {
                            "type": "OBJECT",
                            "properties": {
                                "city": {"type": "STRING", "description": "City name"},
                                "unit": {"type": "STRING", "enum": ["C", "F"], "nullable": True},
                            },
                            "required": ["city"],
                        },
                    }
                ]
            }
        ],
        "toolConfig": {
            "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
        },
        "generationConfig": {
            "temperature": 0.2,
            "topP": 0.9,
            "candidateCount": 2,
            "seed": 7,
            "presencePenalty": 0.1,
            "frequencyPenalty": 0.3,
            "maxOutputTokens": 256,
            "stopSequences": ["END"],
        },
    }


def test_studio_url_and_headers_keep_the_key_out_of_the_url() -> None:
    request, _ = build({"messages": [{"role": "user", "content": "x"}]})
    assert request.method == "POST"
    assert request.url == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    )
    assert request.headers["x-goog-api-key"] == "AIza-key"
    assert "authorization" not in request.headers
    assert "AIza-key" not in request.url
    streamed, _ = build({"messages": [{"role": "user", "content": "x"}], "stream": True})
    assert streamed.url.endswith("/models/gemini-2.5-flash:streamGenerateContent?alt=sse")
    assert streamed.headers["accept"] == "text/event-stream"


def test_stream_flags_are_not_sent_upstream() -> None:
    _, body = build(
        {
            "messages": [{"role": "user", "content": "x"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    assert set(body) == {"contents"}


@pytest.mark.parametrize(
    ("prov", "model", "url"),
    [
        (
            VERTEX,
            "gemini-2.5-pro",
            "https://europe-west4-aiplatform.googleapis.com/v1/projects/proj-1/locations/"
            "europe-west4/publishers/google/models/gemini-2.5-pro:generateContent",
        ),
        (
            provider({"vertex": {"project": "p", "location": "global"}}),
            "gemini-3-pro-preview",
            "https://aiplatform.googleapis.com/v1/projects/p/locations/global/publishers/google/"
            "models/gemini-3-pro-preview:generateContent",
        ),
        (
            provider(
                {"vertex": {"project": "p", "location": "us-east5"}, "api_version": "v1beta1"}
            ),
            "gemini-2.0-flash-001",
            "https://us-east5-aiplatform.googleapis.com/v1beta1/projects/p/locations/us-east5/"
            "publishers/google/models/gemini-2.0-flash-001:generateContent",
        ),
        (
            provider(base_url="http://127.0.0.1:9"),
            "models/gemini-2.5-flash",
            "http://127.0.0.1:9/v1beta/models/gemini-2.5-flash:generateContent",
        ),
        (
            provider(base_url="https://proxy.example/gemini/v1beta"),
            "tunedModels/my-tune-1",
            "https://proxy.example/gemini/v1beta/tunedModels/my-tune-1:generateContent",
        ),
        (
            provider({"api_version": "v1"}),
            "gemini-2.5-flash",
            "https://generativelanguage.googleapis.com/v1/models/gemini-2.5-flash:generateContent",
        ),
    ],
)
def test_urls(prov: ProviderConfig, model: str, url: str) -> None:
    request, _ = build({"messages": [{"role": "user", "content": "x"}]}, model, prov)
    assert request.url == url


def test_vertex_sends_the_token_as_bearer_and_provider_headers() -> None:
    prov = provider(
        {"vertex": {"project": "proj-1", "location": "us-central1"}},
        headers={"x-goog-user-project": "billing-proj"},
    )
    request, _ = build({"messages": [{"role": "user", "content": "x"}]}, prov=prov)
    assert request.headers["authorization"] == "Bearer AIza-key"
    assert request.headers["x-goog-user-project"] == "billing-proj"
    assert "x-goog-api-key" not in request.headers


@pytest.mark.parametrize(
    "model", ["../../v1/x", "gemini:streamGenerateContent", "a b", "gemini?key=1", "x/y"]
)
def test_model_ids_cannot_reshape_the_url(model: str) -> None:
    error = rejected({"messages": [{"role": "user", "content": "x"}]}, model)
    assert error.param == "model"


def test_tool_result_shapes() -> None:
    messages = [
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": f"c{i}",
                    "type": "function",
                    "function": {"name": f"f{i}", "arguments": "{}"},
                }
                for i in range(4)
            ],
        },
        {"role": "tool", "tool_call_id": "c0", "content": "[1, 2]"},
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": '{"ok"'}]},
        {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "42"}]},
        {"role": "tool", "name": "f3", "tool_call_id": "unknown", "content": ""},
    ]
    parts = body_of({"messages": messages})["contents"][2]["parts"]
    assert [p["functionResponse"] for p in parts] == [
        {"name": "f0", "response": {"result": [1, 2]}},
        {"name": "f1", "response": {"result": '{"ok"'}},
        {"name": "f2", "response": {"result": 42}},
        {"name": "f3", "response": {"result": ""}},
    ]


def test_signature_from_google_style_extra_content() -> None:
    call = {
        "id": "call_from_elsewhere",
        "type": "function",
        "function": {"name": "f", "arguments": "{}"},
        "extra_content": {"google": {"thought_signature": SIGNATURE}},
    }
    assert signature_of(call) == SIGNATURE
    body = body_of(
        {
            "messages": [
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_from_elsewhere", "content": "{}"},
            ]
        }
    )
    assert body["contents"][1]["parts"][0]["thoughtSignature"] == SIGNATURE


def test_signature_survives_the_id_round_trip_for_every_base64_shape() -> None:
    for signature in ("QQ==", "QUI=", "QUJD", "+/+/", "a" * 2000 + "==", "noncanonical="):
        call_id = tool_call_id("seed", 1, 3, signature)
        assert call_id.replace("_", "").replace("-", "").isalnum()
        assert signature_of({"id": call_id}) == signature
    assert tool_call_id("seed", 1, 3, None) == tool_call_id("seed", 1, 3, "not base64!")
    assert signature_of({"id": tool_call_id("seed", 0, 0, None)}) is None
    assert tool_call_id("seed", 0, 0, None) != tool_call_id("seed", 0, 1, None)


def test_system_only_request_becomes_the_user_turn() -> None:
    body = body_of({"messages": [{"role": "system", "content": "Tell a joke."}]})
    assert body == {"contents": [{"role": "user", "parts": [{"text": "Tell a joke."}]}]}


def test_empty_messages_are_skipped_and_turns_merge() -> None:
    body = body_of(
        {
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": ""},
                {"role": "user", "content": "b"},
            ]
        }
    )
    assert body["contents"] == [{"role": "user", "parts": [{"text": "a"}, {"text": "b"}]}]


@pytest.mark.parametrize(
    ("part", "expected"),
    [
        (
            {"type": "image_url", "image_url": {"url": "gs://bucket/cat.JPG"}},
            {"fileData": {"mimeType": "image/jpeg", "fileUri": "gs://bucket/cat.JPG"}},
        ),
        (
            {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}},
            {"inlineData": {"mimeType": "audio/wav", "data": "UklGR"}},
        ),
        (
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBER"}},
            {"inlineData": {"mimeType": "application/pdf", "data": "JVBER"}},
        ),
    ],
)
def test_media_parts(part: dict[str, Any], expected: dict[str, Any]) -> None:
    body = body_of({"messages": [{"role": "user", "content": [part]}]})
    assert body["contents"][0]["parts"] == [expected]


HI: list[Any] = [{"role": "user", "content": "x"}]


def with_parts(*parts: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": list(parts)}]}


def with_call(arguments: str) -> dict[str, Any]:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}
    return {"messages": [{"role": "assistant", "tool_calls": [call]}]}


@pytest.mark.parametrize(
    ("canonical", "param"),
    [
        (with_parts({"type": "image_url", "image_url": {"url": "https://x/a.png"}}), "messages"),
        (with_parts({"type": "image_url", "image_url": {"url": "data:image/png,raw"}}), "messages"),
        (with_parts({"type": "file", "file": {"file_id": "file-1"}}), "messages"),
        (with_parts({"type": "video_url", "video_url": {}}), "messages"),
        (
            {"messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]},
            "messages[0].tool_call_id",
        ),
        (with_call("{bad"), "messages[0].tool_calls[0]"),
        (with_call("[1]"), "messages[0].tool_calls[0]"),
        ({"messages": HI, "parallel_tool_calls": False}, "parallel_tool_calls"),
        ({"messages": HI, "tools": [{"type": "custom", "custom": {}}]}, "tools[0]"),
        ({"messages": HI, "tool_choice": "required"}, "tool_choice"),
        ({"messages": HI, "tools": [WEATHER_TOOL], "tool_choice": "maybe"}, "tool_choice"),
        ({"messages": HI, "response_format": {"type": "xml"}}, "response_format"),
        ({"messages": HI, "response_format": {"type": "json_schema"}}, "response_format"),
        ({"messages": HI, "reasoning_effort": "max"}, "reasoning_effort"),
        ({"messages": HI, "stop": 5}, "stop"),
    ],
)
def test_what_gemini_cannot_express_is_a_400_naming_the_field(
    canonical: dict[str, Any], param: str
) -> None:
    assert rejected(canonical).param == param


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"functionCallingConfig": {"mode": "AUTO"}}),
        ("none", {"functionCallingConfig": {"mode": "NONE"}}),
        ("required", {"functionCallingConfig": {"mode": "ANY"}}),
    ],
)
def test_tool_choice_modes(choice: str, expected: dict[str, Any]) -> None:
    body = body_of(
        {
            "messages": [{"role": "user", "content": "x"}],
            "tools": [WEATHER_TOOL],
            "tool_choice": choice,
        }
    )
    assert body["toolConfig"] == expected


def test_tool_choice_without_tools_and_parallel_true_are_harmless() -> None:
    body = body_of(
        {
            "messages": [{"role": "user", "content": "x"}],
            "tool_choice": "none",
            "parallel_tool_calls": True,
        }
    )
    assert set(body) == {"contents"}


def test_function_without_parameters_has_no_parameters_field() -> None:
    tool = {
        "type": "function",
        "function": {"name": "now", "parameters": {"type": "object", "properties": {}}},
    }
    body = body_of({"messages": [{"role": "user", "content": "x"}], "tools": [tool]})
    assert body["tools"] == [{"functionDeclarations": [{"name": "now"}]}]


@pytest.mark.parametrize(
    ("model", "effort", "thinking"),
    [
        ("gemini-2.5-flash", "none", {"thinkingBudget": 0}),
        ("gemini-2.5-flash", "low", {"thinkingBudget": 1024, "includeThoughts": True}),
        ("gemini-2.5-pro", "medium", {"thinkingBudget": 8192, "includeThoughts": True}),
        ("gemini-2.5-pro", "high", {"thinkingBudget": 24576, "includeThoughts": True}),
        ("gemini-3-pro-preview", "low", {"thinkingLevel": "low", "includeThoughts": True}),
        (
            "gemini-3-flash-preview",
            "minimal",
            {"thinkingLevel": "minimal", "includeThoughts": True},
        ),
        ("gemini-3-pro-preview", "high", {"thinkingLevel": "high", "includeThoughts": True}),
    ],
)
def test_reasoning_effort(model: str, effort: str, thinking: dict[str, Any]) -> None:
    body = body_of(
        {"messages": [{"role": "user", "content": "x"}], "reasoning_effort": effort}, model
    )
    assert body["generationConfig"] == {"thinkingConfig": thinking}


def test_include_thoughts_option_and_safety_settings() -> None:
    safety = [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_ONLY_HIGH"}]
    prov = provider({"include_thoughts": True, "safety_settings": safety}, name="thoughtful")
    _, body = build({"messages": [{"role": "user", "content": "x"}]}, prov=prov)
    assert body["generationConfig"] == {"thinkingConfig": {"includeThoughts": True}}
    assert body["safetySettings"] == safety


def test_response_formats() -> None:
    base = {"messages": [{"role": "user", "content": "x"}]}
    assert body_of({**base, "response_format": {"type": "text"}}) == {
        "contents": [{"role": "user", "parts": [{"text": "x"}]}]
    }
    assert body_of({**base, "response_format": {"type": "json_object"}})["generationConfig"] == {
        "responseMimeType": "application/json"
    }
    schema_format = {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"answer": {"type": "integer"}},
                "required": ["answer"],
                "additionalProperties": False,
            },
        },
    }
    assert body_of({**base, "response_format": schema_format})["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseSchema": {
            "type": "OBJECT",
            "properties": {"answer": {"type": "INTEGER"}},
            "required": ["answer"],
        },
    }


def test_capabilities_declare_exactly_the_mapped_params() -> None:
    caps = ADAPTER.capabilities(Target(provider_of(STUDIO), "gemini-2.5-flash", "k"))
    assert caps.image_urls is False
    assert caps.params is not None
    assert {
        "temperature",
        "tools",
        "tool_choice",
        "response_format",
        "reasoning_effort",
    } <= caps.params
    for unsupported in ("logprobs", "top_logprobs", "user", "logit_bias", "functions"):
        assert unsupported not in caps.params
