"""POST /v1/messages/count_tokens against Gemini (AI Studio, Vertex AI) and Bedrock targets:
the Anthropic SDK -> edge -> core -> the provider's own counting API (fake, wire-checked),
over real loopback sockets. The request is translated as for a completion, so the count
includes the system prompt and the tools; Bedrock counts Claude models only, so a route's
other models are passed over (and a route of them alone answers the estimate).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from tests.support.fake_anthropic_count import WEATHER_TOOL
from tests.support.fake_bedrock import ACCESS_KEY, API_KEY, SECRET_KEY, SESSION_TOKEN, FakeBedrock
from tests.support.fake_gemini import FakeGemini, GeminiReceived
from tests.support.fake_gemini_cache import count_tokens
from tests.support.stack import Stack

HAIKU = "us.anthropic.claude-3-5-haiku-20241022-v1:0"  # a cross-Region inference profile
COUNTED_AS = HAIKU.removeprefix("us.")  # CountTokens takes the foundation model's id
TITAN = "amazon.titan-text-express-v1"
UNCOUNTED = "anthropic.claude-uncounted-v1:0"  # a Claude id the fake's region does not count
MESSAGES: list[Any] = [{"role": "user", "content": "What is the weather in Paris today?"}]
SYSTEM = "You answer with one short sentence about the weather."
TOOLS: list[Any] = [WEATHER_TOOL]


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, gemini: FakeGemini, bedrock: FakeBedrock
) -> Iterator[Stack]:
    studio = {"kind": "gemini", "base_url": gemini.url}
    signed = {
        "region": "us-east-1",
        "access_key_id": ACCESS_KEY,
        "secret_access_key": SECRET_KEY,
        "session_token": SESSION_TOKEN,
    }
    aws = {"kind": "bedrock", "base_url": bedrock.url}
    overrides: dict[str, Any] = {
        "providers": {
            "gemini": {**studio, "api_key": gemini.api_key},
            "vertex": {
                **studio,
                "api_key": gemini.token,
                "options": {"vertex": {"project": gemini.project, "location": gemini.location}},
            },
            "bedrock": {**aws, "options": signed},
            "bedrock-key": {**aws, "api_key": API_KEY, "options": {"region": "us-east-1"}},
        },
        "models": {
            "gemini-flash": {"provider": "gemini", "model": "gemini-2.5-flash"},
            "vertex-flash": {"provider": "vertex", "model": "gemini-2.5-flash"},
            "claude-bedrock": {"provider": "bedrock", "model": HAIKU},
            "claude-bedrock-key": {"provider": "bedrock-key", "model": HAIKU},
            "titan-then-claude": {
                "targets": [
                    {"provider": "bedrock", "model": TITAN},
                    {"provider": "bedrock", "model": HAIKU},
                ]
            },
            "titan": {"provider": "bedrock", "model": TITAN},
            "claude-uncounted": {"provider": "bedrock", "model": UNCOUNTED},
        },
    }
    running = Stack(tmp_path_factory.mktemp("count-providers"), overrides).start()
    yield running
    running.stop()


def count(stack: Stack, model: str) -> Any:
    sdk = anthropic.Anthropic(base_url=stack.edge_url, api_key=stack.token(), max_retries=0)
    return sdk.messages.with_raw_response.count_tokens(
        model=model, messages=MESSAGES, system=SYSTEM, tools=TOOLS
    )


def sent_to(gemini: FakeGemini) -> GeminiReceived:
    [sent] = [r for r in gemini.received if r.path.endswith(":countTokens")]
    assert isinstance(sent, GeminiReceived)
    return sent


def test_ai_studio_counts_the_generate_content_request(stack: Stack, gemini: FakeGemini) -> None:
    gemini.reset()
    response = count(stack, "gemini-flash")
    sent = sent_to(gemini)
    assert sent.path == "/v1beta/models/gemini-2.5-flash:countTokens"
    assert sent.headers["x-goog-api-key"] == gemini.api_key
    inner = sent.json["generateContentRequest"]
    assert set(sent.json) == {"generateContentRequest"}
    assert inner["model"] == "models/gemini-2.5-flash"
    assert inner["systemInstruction"] == {"parts": [{"text": SYSTEM}]}
    assert inner["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    assert "generationConfig" not in inner
    counted = {key: value for key, value in inner.items() if key != "model"}
    assert response.parse().input_tokens == count_tokens(counted)
    assert response.headers["x-interlock-provider"] == "gemini"


def test_vertex_counts_at_the_top_level_with_its_token(stack: Stack, gemini: FakeGemini) -> None:
    gemini.reset()
    response = count(stack, "vertex-flash")
    sent = sent_to(gemini)
    assert sent.vertex and sent.path.endswith("/models/gemini-2.5-flash:countTokens")
    assert sent.headers["Authorization"] == f"Bearer {gemini.token}"
    assert set(sent.json) == {"contents", "systemInstruction", "tools"}
    assert response.parse().input_tokens == count_tokens(sent.json)


@pytest.mark.parametrize("model", ["claude-bedrock", "claude-bedrock-key"])
def test_bedrock_counts_the_converse_input(stack: Stack, bedrock: FakeBedrock, model: str) -> None:
    bedrock.reset()
    response = count(stack, model)
    [call] = bedrock.log
    assert (call.model, call.operation) == (COUNTED_AS, "count-tokens")
    assert call.received.path == f"/model/{COUNTED_AS}/count-tokens"  # ':' unescaped, as signed
    authorization = call.received.headers["Authorization"]
    if model == "claude-bedrock-key":
        assert authorization == f"Bearer {API_KEY}"
    else:
        assert authorization.startswith("AWS4-HMAC-SHA256 ")
        assert bedrock.rejected == []  # the fake verified the signature
    converse = call.received.json["input"]["converse"]
    assert converse["system"] == [{"text": SYSTEM}]
    assert converse["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather"
    assert "inferenceConfig" not in converse
    assert response.parse().input_tokens == count_tokens(converse)


def test_models_bedrock_cannot_count_are_passed_over(stack: Stack, bedrock: FakeBedrock) -> None:
    bedrock.reset()
    response = count(stack, "titan-then-claude")
    assert response.headers["x-interlock-failovers"] == "0"
    assert [(c.model, c.operation) for c in bedrock.log] == [(COUNTED_AS, "count-tokens")]
    bedrock.reset()
    alone = count(stack, "titan")
    assert alone.headers["x-interlock-usage-estimated"] == "true"
    assert alone.parse().input_tokens > 0
    assert bedrock.log == []


def test_a_model_bedrock_declines_to_count_answers_the_estimate(
    stack: Stack, bedrock: FakeBedrock
) -> None:
    """Support varies by model and region, which planning cannot know: Bedrock's refusal is
    answered with the estimate, never a 400 that would break a client sizing its context."""
    bedrock.reset()
    response = count(stack, "claude-uncounted")
    assert [(c.model, c.operation) for c in bedrock.log] == [(UNCOUNTED, "count-tokens")]
    assert response.http_response.status_code == 200
    assert response.headers["x-interlock-usage-estimated"] == "true"
    assert response.parse().input_tokens > 0
