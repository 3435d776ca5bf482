"""The Gemini and Bedrock counters (core.providers.adapters.{gemini,bedrock}.counting): what
each builds, which Bedrock models it asks, how replies and errors read; then sent through the
providers' own transports (SigV4, API keys, Vertex tokens) to the wire-checking fakes over
127.0.0.1. The fakes count a quarter of every string's length they were sent, so a count that
left the system prompt or the tools behind comes out smaller than the one asserted."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from core.providers.adapters.base import ProviderError, Target, UpstreamRequest
from core.providers.adapters.bedrock.adapter import ADAPTER as BEDROCK
from core.providers.adapters.bedrock.counting import BEDROCK_COUNTER, counted_model
from core.providers.adapters.bedrock.request import RESPONSE_TOOL
from core.providers.adapters.counting import Counted, Counter, CountInput
from core.providers.adapters.gemini import ADAPTER as GEMINI
from core.providers.adapters.gemini.counting import GEMINI_COUNTER
from core.providers.client import ProviderClient
from core.providers.provider import Provider
from core.startup import no_session, prepare_core
from shared.config import parse_config
from shared.errors import FailureClass
from tests.support.fake_bedrock import ACCESS_KEY, API_KEY, SECRET_KEY, SESSION_TOKEN, FakeBedrock
from tests.support.fake_gemini import FakeGemini
from tests.support.fake_gemini_cache import count_tokens

SYSTEM = "You answer with one short sentence about the weather."
QUESTION = "What is the weather in Paris today?"
DESCRIPTION = "The weather in a city, as reported by the nearest station."
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": DESCRIPTION,
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CANONICAL: dict[str, Any] = {
    "model": "m",
    "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
    "tools": [WEATHER_TOOL],
    "tool_choice": "auto",
    "temperature": 0.3,
    "max_tokens": 50,
}
BARE: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": QUESTION}]}
HAIKU = "anthropic.claude-3-5-haiku-20241022-v1:0"
SONNET_4 = "anthropic.claude-sonnet-4-20250514-v1:0"
ACCOUNT = "arn:aws:bedrock:eu-west-1:123456789012"
OFFLINE = FakeGemini()  # never started: the credentials a fake Gemini takes, for pure builds
SAFETY = [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]


def raw_config(gemini: FakeGemini, gemini_url: str, bedrock_url: str) -> dict[str, Any]:
    """Every provider these tests count with, as an operator would configure them."""
    vertex = {"vertex": {"project": gemini.project, "location": gemini.location}}
    signed = {
        "region": "us-east-1",
        "access_key_id": ACCESS_KEY,
        "secret_access_key": SECRET_KEY,
        "session_token": SESSION_TOKEN,
    }
    studio = {"kind": "gemini", "base_url": gemini_url}
    aws = {"kind": "bedrock", "base_url": bedrock_url}
    return {
        "hop": {"secret": "s" * 40},
        "providers": {
            "studio": {**studio, "api_key": gemini.api_key, "options": {"safety_settings": SAFETY}},
            "vertex": {**studio, "api_key": gemini.token, "options": vertex},
            "bedrock": {**aws, "options": signed},
            "bedrock-key": {**aws, "api_key": API_KEY, "options": {"region": "us-east-1"}},
        },
        "models": {},
    }


def offline(name: str) -> Provider:
    """A provider as start-up builds it, for the pure builds (nothing is sent)."""
    raw = raw_config(OFFLINE, "https://upstream.test", "https://bedrock.test")
    return prepare_core(parse_config(raw, "test", {}), no_session).providers[name]


def target(name: str, model: str, provider: Provider | None = None) -> Target:
    provider = provider or offline(name)
    return Target(provider, model, provider.api_keys[0] if provider.api_keys else None)


def counting(canonical: dict[str, Any]) -> CountInput:
    return CountInput({}, b"", {}, canonical)


def sent(request: UpstreamRequest) -> Any:
    return orjson.loads(request.body)


# ---- Gemini: what is built ---------------------------------------------------------------


def test_ai_studio_counts_the_whole_generate_content_request() -> None:
    studio = target("studio", "gemini-2.5-flash")
    assert GEMINI_COUNTER.problem(studio) is None  # every Gemini model counts
    request = GEMINI_COUNTER.build(counting(CANONICAL), studio)
    assert request.method == "POST"
    assert request.url == "https://upstream.test/v1beta/models/gemini-2.5-flash:countTokens"
    assert request.headers["x-goog-api-key"] == OFFLINE.api_key
    assert "authorization" not in request.headers
    assert set(sent(request)) == {"generateContentRequest"}
    inner = sent(request)["generateContentRequest"]
    assert inner["model"] == "models/gemini-2.5-flash"
    assert inner["systemInstruction"] == {"parts": [{"text": SYSTEM}]}
    assert inner["contents"] == [{"role": "user", "parts": [{"text": QUESTION}]}]
    [declaration] = inner["tools"][0]["functionDeclarations"]
    assert declaration["name"] == "get_weather"
    assert inner["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    # Sampling, the output cap and the operator's safety settings cost no input.
    assert "generationConfig" not in inner and "safetySettings" not in inner


def test_vertex_counts_at_the_top_level_without_a_tool_config() -> None:
    request = GEMINI_COUNTER.build(counting(CANONICAL), target("vertex", "gemini-2.5-flash"))
    assert request.url == (
        f"https://upstream.test/v1/projects/{OFFLINE.project}/locations/us-central1/publishers/google"
        "/models/gemini-2.5-flash:countTokens"
    )
    assert request.headers["authorization"] == f"Bearer {OFFLINE.token}"
    assert "x-goog-api-key" not in request.headers
    assert set(sent(request)) == {"contents", "systemInstruction", "tools"}
    assert sent(request)["systemInstruction"] == {"parts": [{"text": SYSTEM}]}


@pytest.mark.parametrize("provider", ["studio", "vertex"])
def test_a_response_schema_is_counted_without_the_sampling_settings(provider: str) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    response_format = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}
    canonical = {**CANONICAL, "response_format": response_format}
    request = GEMINI_COUNTER.build(counting(canonical), target(provider, "gemini-2.5-flash"))
    body = sent(request)
    config = (body.get("generateContentRequest") or body)["generationConfig"]
    assert set(config) == {"responseMimeType", "responseSchema"}
    assert config["responseSchema"]["properties"]["answer"]["type"] == "STRING"


def test_a_resource_name_is_sent_as_it_is_named() -> None:
    request = GEMINI_COUNTER.build(counting(BARE), target("studio", "models/gemini-2.5-pro"))
    assert request.url.endswith("/v1beta/models/gemini-2.5-pro:countTokens")
    assert sent(request)["generateContentRequest"]["model"] == "models/gemini-2.5-pro"


@pytest.mark.parametrize(
    ("provider", "model"), [("studio", "../../v1/files"), ("vertex", "models/gemini-2.5-pro")]
)
def test_model_ids_chat_refuses_are_refused(provider: str, model: str) -> None:
    with pytest.raises(ProviderError) as info:
        GEMINI_COUNTER.build(counting(BARE), target(provider, model))
    assert (info.value.status, info.value.failure_class) == (400, FailureClass.CLIENT_ERROR)


# ---- Bedrock: which model is asked, what is built -----------------------------------------


@pytest.mark.parametrize(
    ("model", "asked"),
    [
        (HAIKU, HAIKU),
        (f"us.{SONNET_4}", SONNET_4),
        (f"apac.{SONNET_4}", SONNET_4),
        (f"us-gov.{SONNET_4}", SONNET_4),
        ("global.anthropic.claude-sonnet-4-6", "anthropic.claude-sonnet-4-6"),
        (f"arn:aws:bedrock:us-west-2::foundation-model/{HAIKU}", HAIKU),
        (f"{ACCOUNT}:inference-profile/eu.{SONNET_4}", SONNET_4),
        (f"{ACCOUNT}:application-inference-profile/a1b2c3d4", None),
        (f"{ACCOUNT}:provisioned-model/p1", None),
        ("amazon.nova-pro-v1:0", None),
        ("us.meta.llama3-3-70b-instruct-v1:0", None),
    ],
)
def test_the_foundation_model_is_asked(model: str, asked: str | None) -> None:
    assert counted_model(model) == asked
    problem = BEDROCK_COUNTER.problem(target("bedrock", model))
    assert (problem is None) is (asked is not None)


@pytest.mark.parametrize(
    "model",
    [
        "anthropic.claude-3-haiku-20240307-v1:0",
        "us.anthropic.claude-3-opus-20240229-v1:0",
        "anthropic.claude-3-sonnet-20240229-v1:0",
        "anthropic.claude-v2:1",
        "anthropic.claude-instant-v1",
    ],
)
def test_claude_models_before_3_5_are_passed_over(model: str) -> None:
    problem = BEDROCK_COUNTER.problem(target("bedrock", model))
    assert problem is not None and problem.startswith("bedrock/")


def test_bedrock_counts_the_converse_input_under_the_models_own_id() -> None:
    request = BEDROCK_COUNTER.build(counting(CANONICAL), target("bedrock", f"us.{HAIKU}"))
    # ':' stays unescaped: the path as the HTTP client puts it on the wire, and as signed.
    assert request.url == f"https://bedrock.test/model/{HAIKU}/count-tokens"
    assert request.headers["content-type"] == request.headers["accept"] == "application/json"
    assert "authorization" not in request.headers  # SigV4 signs it in the transport
    assert set(sent(request)) == {"input"} and set(sent(request)["input"]) == {"converse"}
    converse = sent(request)["input"]["converse"]
    assert set(converse) == {"messages", "system", "toolConfig"}  # no inferenceConfig
    assert converse["system"] == [{"text": SYSTEM}]
    assert converse["messages"] == [{"role": "user", "content": [{"text": QUESTION}]}]
    [spec] = converse["toolConfig"]["tools"]
    assert spec["toolSpec"]["name"] == "get_weather"


def test_a_bedrock_api_key_is_sent_as_a_bearer_token() -> None:
    request = BEDROCK_COUNTER.build(counting(BARE), target("bedrock-key", HAIKU))
    assert request.headers["authorization"] == f"Bearer {API_KEY}"


def test_cache_points_are_not_counted() -> None:
    mark = {"type": "ephemeral", "ttl": "1h"}
    long_system = SYSTEM + " Be brief." * 1000  # a prefix long enough to be cached
    system = [{"type": "text", "text": long_system, "cache_control": mark}]
    question = [{"type": "text", "text": QUESTION, "cache_control": mark}]
    canonical = {
        **CANONICAL,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
    }
    model = "anthropic.claude-3-7-sonnet-20250219-v1:0"  # takes cache points, not of an hour
    chat = BEDROCK.build_request(canonical, target("bedrock", model))
    assert b"cachePoint" in chat.body  # the marks are kept for chat
    request = BEDROCK_COUNTER.build(counting(canonical), target("bedrock", model))
    assert b"cachePoint" not in request.body
    assert sent(request)["input"]["converse"]["system"] == [{"text": long_system}]


def test_a_response_format_is_counted_as_the_tool_chat_would_force() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    response_format = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}
    request = BEDROCK_COUNTER.build(
        counting({**BARE, "response_format": response_format}), target("bedrock", HAIKU)
    )
    [spec] = sent(request)["input"]["converse"]["toolConfig"]["tools"]
    assert spec["toolSpec"]["name"] == RESPONSE_TOOL
    assert spec["toolSpec"]["inputSchema"] == {"json": schema}


# ---- replies and errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counter", "field"), [(GEMINI_COUNTER, "totalTokens"), (BEDROCK_COUNTER, "inputTokens")]
)
def test_the_count_is_read_and_a_reply_without_one_fails_over(counter: Counter, field: str) -> None:
    claude = target("bedrock", HAIKU)
    reply = orjson.dumps({field: 42, "promptTokensDetails": []})
    assert counter.parse(reply, claude) == Counted(42)
    for bad in (b"<html>", b"[]", b"{}", orjson.dumps({field: -1}), orjson.dumps({field: 4.5})):
        with pytest.raises(ProviderError) as info:
            counter.parse(bad, claude)
        assert (info.value.status, info.value.failure_class) == (502, FailureClass.TRANSIENT)


def test_gemini_errors_read_as_chats_do() -> None:
    body = orjson.dumps(
        {"error": {"code": 429, "message": "Resource exhausted.", "status": "RESOURCE_EXHAUSTED"}}
    )
    error = GEMINI_COUNTER.parse_error(429, {}, body)
    assert (error.status, error.failure_class) == (429, FailureClass.RATE_LIMIT)
    assert vars(error) == vars(GEMINI.parse_error(429, {}, body))


@pytest.mark.parametrize(
    ("status", "kind", "message", "expected"),
    [
        (400, "ValidationException", "The provided model doesn't support counting tokens.",
         (400, FailureClass.CLIENT_ERROR)),
        (429, "ThrottlingException", "Too many requests.", (429, FailureClass.RATE_LIMIT)),
    ],
)  # fmt: skip
def test_bedrock_errors_read_as_chats_do(
    status: int, kind: str, message: str, expected: tuple[int, FailureClass]
) -> None:
    headers = {"x-amzn-errortype": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    body = orjson.dumps({"message": message})
    error = BEDROCK_COUNTER.parse_error(status, headers, body)
    assert (error.status, error.failure_class) == expected
    assert vars(error) == vars(BEDROCK.parse_error(status, headers, body))


# ---- over the wire: the providers' transports to the fakes --------------------------------


def over_the_wire(
    fakes: tuple[FakeGemini, FakeBedrock], name: str, model: str, canonical: dict[str, Any]
) -> Counted:
    """Builds `name`'s provider as start-up does, with a real HTTP client, and counts
    `canonical` on `model` as the count API does: build, send through the transport (which
    signs), parse."""
    counter: Counter = BEDROCK_COUNTER if name.startswith("bedrock") else GEMINI_COUNTER

    async def main() -> Counted:
        async with ProviderClient(8) as session:
            raw = raw_config(fakes[0], fakes[0].url, fakes[1].url)
            provider = prepare_core(parse_config(raw, "test", {}), lambda: session).providers[name]
            counted_on = target(name, model, provider)
            upstream = counter.build(counting(canonical), counted_on)
            _, body = await provider.transport.fetch(upstream, counted_on, counter.parse_error)
            return counter.parse(body, counted_on)

    return asyncio.run(main())


# What the system prompt and the tool's description alone add to a count, at the least.
ADDED = (len(SYSTEM) + len(DESCRIPTION)) // 4


@pytest.mark.parametrize("name", ["studio", "vertex"])
def test_gemini_counts_what_it_was_sent(
    gemini: FakeGemini, bedrock: FakeBedrock, name: str
) -> None:
    gemini.reset()
    counted = over_the_wire((gemini, bedrock), name, "gemini-2.5-flash", CANONICAL)
    [received] = gemini.received
    assert received.path.endswith("/models/gemini-2.5-flash:countTokens")
    if name == "vertex":
        assert received.headers["Authorization"] == f"Bearer {gemini.token}"
        counted_part = received.json
    else:
        assert received.headers["x-goog-api-key"] == gemini.api_key
        inner = received.json["generateContentRequest"]
        counted_part = {key: value for key, value in inner.items() if key != "model"}
    assert counted == Counted(count_tokens(counted_part))
    bare = over_the_wire((gemini, bedrock), name, "gemini-2.5-flash", BARE)
    assert counted.input_tokens - bare.input_tokens >= ADDED


def test_a_gemini_error_is_read_by_the_counters_parser(
    gemini: FakeGemini, bedrock: FakeBedrock
) -> None:
    with pytest.raises(ProviderError) as info:
        over_the_wire((gemini, bedrock), "studio", "fail-429", BARE)
    assert (info.value.status, info.value.failure_class) == (429, FailureClass.RATE_LIMIT)
    assert info.value.retry_after_s == 1.0


@pytest.mark.parametrize("name", ["bedrock", "bedrock-key"])
def test_bedrock_counts_what_it_was_sent_signed(
    gemini: FakeGemini, bedrock: FakeBedrock, name: str
) -> None:
    bedrock.reset()
    counted = over_the_wire((gemini, bedrock), name, f"us.{HAIKU}", CANONICAL)
    [call] = bedrock.log
    assert (call.model, call.operation) == (HAIKU, "count-tokens")
    assert call.received.path == f"/model/{HAIKU}/count-tokens"
    authorization = call.received.headers["Authorization"]
    if name == "bedrock":
        assert authorization.startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
        assert call.received.headers["X-Amz-Security-Token"] == SESSION_TOKEN
    else:
        assert authorization == f"Bearer {API_KEY}"
    assert bedrock.rejected == []  # the fake checked the signature (or key) and took it
    converse = call.received.json["input"]["converse"]
    assert counted == Counted(count_tokens(converse))
    bare = over_the_wire((gemini, bedrock), name, HAIKU, BARE)
    assert counted.input_tokens - bare.input_tokens >= ADDED


@pytest.mark.parametrize(
    "model", ["anthropic.claude-3-haiku-20240307-v1:0", "amazon.titan-text-express-v1"]
)
def test_a_model_bedrock_cannot_count_is_refused_as_planning_expects(
    gemini: FakeGemini, bedrock: FakeBedrock, model: str
) -> None:
    assert BEDROCK_COUNTER.problem(target("bedrock", model)) is not None  # never planned
    with pytest.raises(ProviderError) as info:  # and refused if it were sent
        over_the_wire((gemini, bedrock), "bedrock", model, BARE)
    assert (info.value.status, info.value.failure_class) == (400, FailureClass.CLIENT_ERROR)
    assert "support counting tokens" in info.value.message
