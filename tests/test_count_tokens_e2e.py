"""POST /v1/messages/count_tokens: the official Anthropic SDK -> edge -> core -> a target that
counts, over real loopback sockets.

Anthropic targets are sent the client's own request (model rewritten) and relayed as they
answer; the mock counts as its usage reports; a route with no target that can count answers
with the gateway's estimate and says so; errors leave in the Anthropic envelope.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest

from tests.support import raw
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_anthropic_count import WEATHER_TOOL, fake_count
from tests.support.fake_openai import FakeOpenAI
from tests.support.stack import Stack

UPSTREAM_KEY = "sk-ant-upstream-count"
MESSAGES: list[Any] = [{"role": "user", "content": "How many tokens is this sentence?"}]
SYSTEM = "You are a careful counter of tokens."
TOOLS: list[Any] = [WEATHER_TOOL]


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, claude: FakeAnthropic, fake: FakeOpenAI
) -> Iterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("count-tokens")
    claude_provider = {"kind": "anthropic", "base_url": claude.url, "api_key": UPSTREAM_KEY}
    overrides: dict[str, Any] = {
        "providers": {
            "claude": {**claude_provider, "allow_any_model": True},
            "mock": {"kind": "mock"},
            "fake": {"kind": "openai", "base_url": fake.base_url, "api_key": "sk-test-upstream"},
        },
        "models": {
            "claude-fake": {"provider": "claude", "model": "claude-fake"},
            "claude-context": {"provider": "claude", "model": "context-managed"},
            "claude-limited": {"provider": "claude", "model": "rate-limit"},
            "claude-too-long": {"provider": "claude", "model": "context"},
            "claude-resilient": {
                "targets": [
                    {"provider": "claude", "model": "overloaded"},
                    {"provider": "claude", "model": "claude-fake"},
                ]
            },
            "gpt-then-claude": {
                "targets": [
                    {"provider": "fake", "model": "gpt-fake"},
                    {"provider": "claude", "model": "claude-fake"},
                ]
            },
            "mock-1": {"provider": "mock", "model": "mock-1"},
            "gpt-fake": {"provider": "fake", "model": "gpt-fake"},
        },
        "aliases": {"sonnet": "claude-fake"},
        # A cap sets max_tokens where a request has none: never on a count (the fake refuses
        # a count with max_tokens, and the first test checks what was sent, field by field).
        # Fast retries keep the error tests quick.
        "core": {
            "resilience": {"retry_after_cap": "10ms", "backoff_base": "1ms", "backoff_cap": "5ms"}
        },
        "routing": {
            "rules": [{"id": "capped", "when": {"model": "claude-fake"}, "cap": {"max_tokens": 16}}]
        },
    }
    running = Stack(workdir, overrides).start()
    yield running
    running.stop()


def client(stack: Stack, **token: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.edge_url, api_key=stack.token(**token), max_retries=0)


def count(stack: Stack, body: dict[str, Any], **headers: str) -> raw.RawResponse:
    headers.setdefault("x-api-key", stack.token())
    headers.setdefault("anthropic-version", "2023-06-01")
    return raw.post(f"{stack.edge_url}/v1/messages/count_tokens", body, headers=headers)


def anthropic_error(response: raw.RawResponse) -> dict[str, Any]:
    body = response.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    return body["error"]  # type: ignore[no-any-return]


def test_the_sdk_counts_through_anthropic_with_the_clients_own_request(
    stack: Stack, claude: FakeAnthropic
) -> None:
    claude.reset()
    response = client(stack).messages.with_raw_response.count_tokens(
        model="claude-fake", messages=MESSAGES, system=SYSTEM, tools=TOOLS
    )
    [sent] = [r for r in claude.received if r.path == "/v1/messages/count_tokens"]
    expected = {"model": "claude-fake", "messages": MESSAGES, "system": SYSTEM, "tools": TOOLS}
    assert sent.json == expected
    assert sent.headers["x-api-key"] == UPSTREAM_KEY
    assert sent.headers["anthropic-version"]
    assert response.parse().input_tokens == fake_count(sent.json)
    assert response.headers["x-interlock-provider"] == "claude"
    assert response.headers["request-id"] == response.headers["x-request-id"]
    assert "x-interlock-usage-estimated" not in response.headers
    assert not [r for r in claude.received if r.path == "/v1/messages"]  # nothing generated


def test_an_alias_is_sent_as_the_targets_model_and_betas_are_forwarded(
    stack: Stack, claude: FakeAnthropic
) -> None:
    claude.reset()
    counted = client(stack).beta.messages.count_tokens(
        model="sonnet", messages=MESSAGES, betas=["token-efficient-tools-2025-02-19"]
    )
    [sent] = claude.received
    assert sent.json["model"] == "claude-fake"
    assert "token-efficient-tools-2025-02-19" in sent.headers["anthropic-beta"]
    assert counted.input_tokens == fake_count(sent.json)


def test_anthropics_answer_is_relayed_whole(stack: Stack) -> None:
    response = count(stack, {"model": "claude-context", "messages": MESSAGES})
    assert response.status == 200
    body = response.json()
    assert body["context_management"] == {"original_input_tokens": body["input_tokens"] + 100}


def test_an_overloaded_target_fails_over(stack: Stack, claude: FakeAnthropic) -> None:
    claude.reset()
    response = count(stack, {"model": "claude-resilient", "messages": MESSAGES})
    assert response.status == 200
    assert response.headers["x-interlock-failovers"] == "1"
    assert [r.json["model"] for r in claude.received] == ["overloaded", "claude-fake"]


def test_targets_that_cannot_count_are_passed_over(stack: Stack, fake: FakeOpenAI) -> None:
    before = len(fake.received)
    response = count(stack, {"model": "gpt-then-claude", "messages": MESSAGES})
    assert response.status == 200
    assert response.headers["x-interlock-provider"] == "claude"
    assert len(fake.received) == before


def test_the_mock_counts_what_its_usage_reports(stack: Stack) -> None:
    sdk = client(stack)
    counted = sdk.messages.count_tokens(model="mock-1", messages=MESSAGES, system=SYSTEM)
    message = sdk.messages.create(model="mock-1", max_tokens=50, messages=MESSAGES, system=SYSTEM)
    assert counted.input_tokens == message.usage.input_tokens > 0


def test_a_route_that_cannot_count_answers_the_estimate_and_says_so(
    stack: Stack, fake: FakeOpenAI
) -> None:
    before = len(fake.received)
    bare = count(stack, {"model": "gpt-fake", "messages": MESSAGES})
    with_tools = count(stack, {"model": "gpt-fake", "messages": MESSAGES, "tools": TOOLS})
    assert bare.status == with_tools.status == 200
    assert bare.headers["x-interlock-usage-estimated"] == "true"
    assert 0 < bare.json()["input_tokens"] < with_tools.json()["input_tokens"]
    assert set(bare.json()) == {"input_tokens"}
    assert len(fake.received) == before  # nothing was sent upstream


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "claude-fake"}, "messages"),
        ({"model": "claude-fake", "messages": []}, "messages"),
        ({"messages": MESSAGES}, "model"),
        ({"model": "claude-fake", "messages": MESSAGES, "tools": [{"name": 3}]}, "tools[0].name"),
        ({"model": "claude-fake", "messages": MESSAGES, "thinking": "on"}, "thinking"),
    ],
)
def test_invalid_requests_are_400s_naming_the_field(
    stack: Stack, body: dict[str, Any], field: str
) -> None:
    response = count(stack, body)
    assert response.status == 400
    error = anthropic_error(response)
    assert error["type"] == "invalid_request_error"
    assert field in error["message"]


def test_models_the_token_may_not_use_or_that_do_not_exist(stack: Stack) -> None:
    refused = count(
        stack,
        {"model": "claude-fake", "messages": MESSAGES},
        **{"x-api-key": stack.token(models=["mock-1"])},
    )
    assert refused.status == 403 and anthropic_error(refused)["type"] == "permission_error"
    missing = count(stack, {"model": "no-such-model", "messages": MESSAGES})
    assert missing.status == 404 and anthropic_error(missing)["type"] == "not_found_error"


def test_an_upstream_rate_limit_is_a_429_in_the_anthropic_envelope(stack: Stack) -> None:
    with pytest.raises(anthropic.RateLimitError) as info:
        client(stack).messages.count_tokens(model="claude-limited", messages=MESSAGES)
    assert info.value.status_code == 429
    assert "sk-ant" not in str(info.value.body)


def test_a_body_that_is_not_json_is_a_400(stack: Stack) -> None:
    response = raw.post(
        f"{stack.edge_url}/v1/messages/count_tokens",
        b"{not json",
        headers={"x-api-key": stack.token(), "content-type": "application/json"},
    )
    assert response.status == 400
    assert anthropic_error(response)["type"] == "invalid_request_error"
    assert orjson.loads(response.body)["error"]["message"]


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
def test_a_too_long_prompt_keeps_anthropics_status_type_and_wording(
    stack: Stack, path: str
) -> None:
    """Claude Code compacts its context when Anthropic says the prompt is too long: it matches
    the wording, so a relayed error keeps it (scrubbed of nothing it needs)."""
    body: dict[str, Any] = {"model": "claude-too-long", "messages": MESSAGES}
    if path == "/v1/messages":
        body["max_tokens"] = 10
    headers = {"x-api-key": stack.token(), "anthropic-version": "2023-06-01"}
    response = raw.post(f"{stack.edge_url}{path}", body, headers=headers)
    assert response.status == 400
    error = anthropic_error(response)
    assert error["type"] == "invalid_request_error"
    assert error["message"] == "prompt is too long: 215337 tokens > 200000 maximum"
