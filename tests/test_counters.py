"""The token counters (core.providers.adapters.counting): pure builds and parses, one kind at
a time. What each provider's fake accepts is checked over sockets in the e2e tests
(test_count_tokens_e2e.py, test_count_tokens_providers_e2e.py); here, the edges."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from core.providers.adapters.anthropic.counting import ANTHROPIC_COUNTER
from core.providers.adapters.base import ProviderError, Target
from core.providers.adapters.bedrock.counting import BEDROCK_COUNTER
from core.providers.adapters.counting import CountInput, reply_count
from core.providers.adapters.gemini.counting import GEMINI_COUNTER
from shared.config import ProviderConfig
from shared.errors import GatewayError
from shared.secret import Secret
from tests.support.providers import provider_of

MESSAGES: list[Any] = [{"role": "user", "content": "Count me"}]
CANONICAL: dict[str, Any] = {"model": "m", "messages": MESSAGES}


def target(kind: str, model: str, options: dict[str, Any] | None = None) -> Target:
    config = ProviderConfig(
        kind, kind, "https://upstream.test", (Secret("k-123"),), {}, None, False, options or {}
    )
    return Target(provider_of(config), model, Secret("k-123"))


def counted(payload: dict[str, Any], headers: dict[str, str] | None = None) -> CountInput:
    return CountInput(payload, orjson.dumps(payload), headers or {}, CANONICAL)


def test_anthropic_sends_the_clients_bytes_unless_the_model_changes() -> None:
    payload = {"model": "claude-x", "messages": MESSAGES}
    request = counted(payload)
    same = ANTHROPIC_COUNTER.build(request, target("anthropic", "claude-x"))
    assert same.url == "https://upstream.test/v1/messages/count_tokens"
    assert same.body == request.raw and same.headers["x-api-key"] == "k-123"
    renamed = ANTHROPIC_COUNTER.build(request, target("anthropic", "claude-y"))
    assert orjson.loads(renamed.body) == {**payload, "model": "claude-y"}


def test_anthropic_beta_flags_join_the_operators_once() -> None:
    provider = target("anthropic", "claude-x", {"beta": ["a-1"]})
    headers = {"anthropic-beta": "b-2, a-1", "anthropic-version": "2024-01-01"}
    sent = ANTHROPIC_COUNTER.build(
        counted({"model": "claude-x", "messages": MESSAGES}, headers), provider
    )
    assert sent.headers["anthropic-beta"] == "a-1,b-2"
    assert sent.headers["anthropic-version"] == "2024-01-01"


def test_anthropics_answer_is_kept_whole() -> None:
    body = b'{"input_tokens":12,"context_management":{"original_input_tokens":20}}'
    answer = ANTHROPIC_COUNTER.parse(body, target("anthropic", "claude-x"))
    assert (answer.input_tokens, answer.body, answer.estimated) == (12, body, False)


@pytest.mark.parametrize(
    "body", [b"not json", b"[1]", b"{}", b'{"input_tokens":-1}', b'{"input_tokens":"7"}']
)
def test_a_reply_without_a_count_is_a_502_that_fails_over(body: bytes) -> None:
    with pytest.raises(ProviderError) as info:
        reply_count(body, "input_tokens")
    assert info.value.status == 502


def test_gemini_names_a_tuned_model_as_it_is() -> None:
    sent = GEMINI_COUNTER.build(counted(CANONICAL), target("gemini", "tunedModels/mine-1"))
    assert sent.url.endswith("/tunedModels/mine-1:countTokens")
    assert orjson.loads(sent.body)["generateContentRequest"]["model"] == "tunedModels/mine-1"
    assert GEMINI_COUNTER.parse(b'{"totalTokens": 9}', target("gemini", "g")).input_tokens == 9


def test_gemini_refuses_a_model_id_it_would_refuse_for_chat() -> None:
    with pytest.raises((GatewayError, ProviderError)) as info:
        GEMINI_COUNTER.build(counted(CANONICAL), target("gemini", "../../etc"))
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("model", "counts"),
    [
        ("anthropic.claude-3-haiku-20240307-v1:0", True),
        ("us.anthropic.claude-sonnet-4-20250514-v1:0", True),
        ("arn:aws:bedrock:us-east-1:1:inference-profile/eu.anthropic.claude-3-7-sonnet-v1:0", True),
        ("amazon.titan-text-express-v1", False),
        ("meta.llama3-70b-instruct-v1:0", False),
    ],
)
def test_bedrock_counts_claude_models_only(model: str, counts: bool) -> None:
    problem = BEDROCK_COUNTER.problem(target("bedrock", model, {"region": "us-east-1"}))
    assert (problem is None) is counts


def test_bedrock_counts_the_converse_input_only() -> None:
    canonical = {**CANONICAL, "max_tokens": 50, "temperature": 0.2}
    model = "anthropic.claude-3-haiku-20240307-v1:0"
    claude = target("bedrock", model, {"region": "us-east-1"})
    sent = BEDROCK_COUNTER.build(CountInput({}, b"", {}, canonical), claude)
    assert sent.url == f"https://upstream.test/model/{model}/count-tokens"
    assert set(orjson.loads(sent.body)["input"]["converse"]) == {"messages"}
    assert BEDROCK_COUNTER.parse(b'{"inputTokens": 4}', claude).input_tokens == 4
