"""Routing rules end to end: a real edge and core, the official openai and anthropic SDKs, the
mock provider and the fake Anthropic. Each action (refuse, cap, named route, model rewrite,
latency ceiling) for chat, messages and embeddings, streams too, and `x-interlock-route` /
`x-interlock-strategy` on every response after resolve, errors included."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.stack import Stack

MESSAGES: Any = [{"role": "user", "content": "hello there"}]
RULE = "x-policy"  # the test's own header: which rule a request should meet


def rule(rule_id: str, **action: Any) -> dict[str, Any]:
    return {"id": rule_id, "when": {f"header.{RULE}": rule_id}, **action}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, claude: FakeAnthropic) -> Iterator[Stack]:
    overrides = {
        "providers": {
            "mock": {"kind": "mock", "allow_any_model": True},
            "claude": {"kind": "anthropic", "base_url": claude.url, "api_key": "sk-ant-op"},
        },
        "models": {
            "mock-1": {"provider": "mock", "model": "mock-1"},
            "mock-small": {"provider": "mock", "model": "mock-small"},
            "claude-test": {"provider": "claude", "model": "claude-test"},
        },
        "aliases": {"small": "mock-small"},
        "routing": {
            "headers": [RULE],
            "routes": {
                "big": {
                    "targets": [
                        {"provider": "mock", "model": "mock-big", "weight": 2},
                        {"provider": "mock", "model": "mock-big-2"},
                    ],
                    "strategy": "weighted",
                },
                "anthropic": {"targets": [{"provider": "claude", "model": "claude-test"}]},
            },
            "rules": [
                rule("refuse", refuse="this gateway does not take such requests"),
                rule("route", route="big"),
                rule("rewrite", model="small"),
                rule("cap", cap={"max_tokens": 3}),
                rule("ceiling", latency_ceiling_ms=200),
                rule("passthrough-cap", route="anthropic", cap={"max_tokens": 2}),
                {"id": "free-tier", "when": {"tier": "free"}, "model": "mock-small"},
            ],
        },
    }
    running = Stack(tmp_path_factory.mktemp("routing-policy"), overrides).start()
    yield running
    running.stop()


def chat_sdk(stack: Stack, tier: str | None = None) -> openai.OpenAI:
    token = stack.token(tier=tier)
    return openai.OpenAI(base_url=f"{stack.edge_url}/v1", api_key=token, max_retries=0)


def messages_sdk(stack: Stack) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.edge_url, api_key=stack.token(), max_retries=0)


def via(rule_id: str) -> dict[str, str]:
    return {RULE: rule_id}


def assert_routed(headers: Any, rule_id: str, strategy: str = "fallback") -> None:
    assert headers["x-interlock-route"] == rule_id
    assert headers["x-interlock-strategy"] == strategy


# ---- chat ----------------------------------------------------------------------------------


def test_chat_without_a_matching_rule_is_default(stack: Stack) -> None:
    raw = chat_sdk(stack).chat.completions.with_raw_response.create(
        model="mock-1", messages=MESSAGES
    )
    assert_routed(raw.headers, "default")
    assert raw.headers["x-interlock-model"] == "mock-1"


def test_chat_refused_with_the_operators_message(stack: Stack) -> None:
    with pytest.raises(openai.PermissionDeniedError) as refused:
        chat_sdk(stack).chat.completions.create(
            model="mock-1", messages=MESSAGES, extra_headers=via("refuse")
        )
    error = refused.value
    assert error.code == "policy_refused"
    assert "this gateway does not take such requests" in error.message
    assert_routed(error.response.headers, "refuse", "none")


@pytest.mark.parametrize("stream", [False, True])
def test_chat_to_a_named_route(stack: Stack, stream: bool) -> None:
    raw = chat_sdk(stack).chat.completions.with_raw_response.create(
        model="mock-1", messages=MESSAGES, stream=stream, extra_headers=via("route")
    )
    assert_routed(raw.headers, "route", "weighted")
    assert raw.headers["x-interlock-model"] in ("mock-big", "mock-big-2")
    if stream:
        assert [chunk for chunk in raw.parse()]  # the stream itself is whole


def test_chat_rewritten_to_an_alias(stack: Stack) -> None:
    raw = chat_sdk(stack).chat.completions.with_raw_response.create(
        model="mock-1", messages=MESSAGES, extra_headers=via("rewrite")
    )
    assert_routed(raw.headers, "rewrite")
    assert raw.headers["x-interlock-model"] == "mock-small"


@pytest.mark.parametrize("given", [None, 50, 2])
def test_chat_capped_before_planning(stack: Stack, given: int | None) -> None:
    raw = chat_sdk(stack).chat.completions.with_raw_response.create(
        model="mock-1",
        messages=MESSAGES,
        extra_headers=via("cap"),
        max_tokens=openai.omit if given is None else given,
    )
    assert_routed(raw.headers, "cap")  # the requested model's own route
    completion = raw.parse()
    assert completion.usage is not None
    assert completion.usage.completion_tokens == min(3, given or 3)
    assert completion.choices[0].finish_reason == "length"


def test_chat_stream_capped(stack: Stack) -> None:
    stream = chat_sdk(stack).chat.completions.create(
        model="mock-1",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=via("cap"),
    )
    usage = [chunk.usage for chunk in stream if chunk.usage is not None]
    assert usage and usage[-1].completion_tokens == 3


def test_chat_latency_ceiling_rule(stack: Stack) -> None:
    raw = chat_sdk(stack).chat.completions.with_raw_response.create(
        model="mock-1", messages=MESSAGES, extra_headers=via("ceiling")
    )
    assert_routed(raw.headers, "ceiling")  # the ceiling itself: tests/test_routing_resolve.py


def test_tier_condition_from_the_token(stack: Stack) -> None:
    raw = chat_sdk(stack, tier="free").chat.completions.with_raw_response.create(
        model="mock-1", messages=MESSAGES
    )
    assert_routed(raw.headers, "free-tier")
    assert raw.headers["x-interlock-model"] == "mock-small"


def test_errors_after_resolve_carry_the_route(stack: Stack) -> None:
    """An unknown model: no rule matched, so `default`, and no route (`none`). A request
    refused before resolve (validation) has decided nothing and says nothing."""
    with pytest.raises(openai.NotFoundError) as missing:
        chat_sdk(stack).chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert_routed(missing.value.response.headers, "default", "none")
    with pytest.raises(openai.BadRequestError) as bad:  # validation: before resolve, no header
        chat_sdk(stack).chat.completions.create(model="mock-1", messages=[])
    assert "x-interlock-route" not in bad.value.response.headers


# ---- messages ------------------------------------------------------------------------------


def test_messages_actions(stack: Stack) -> None:
    sdk = messages_sdk(stack).messages
    raw = sdk.with_raw_response.create(model="mock-1", max_tokens=50, messages=MESSAGES)
    assert_routed(raw.headers, "default")
    raw = sdk.with_raw_response.create(
        model="mock-1", max_tokens=50, messages=MESSAGES, extra_headers=via("route")
    )
    assert_routed(raw.headers, "route", "weighted")
    assert raw.headers["x-interlock-model"] in ("mock-big", "mock-big-2")
    raw = sdk.with_raw_response.create(
        model="mock-1", max_tokens=50, messages=MESSAGES, extra_headers=via("rewrite")
    )
    assert raw.headers["x-interlock-model"] == "mock-small"
    raw = sdk.with_raw_response.create(
        model="mock-1", max_tokens=50, messages=MESSAGES, extra_headers=via("cap")
    )
    assert_routed(raw.headers, "cap")
    message = raw.parse()
    assert message.usage.output_tokens == 3 and message.stop_reason == "max_tokens"
    raw = sdk.with_raw_response.create(
        model="mock-1", max_tokens=50, messages=MESSAGES, extra_headers=via("ceiling")
    )
    assert_routed(raw.headers, "ceiling")
    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        sdk.create(model="mock-1", max_tokens=50, messages=MESSAGES, extra_headers=via("refuse"))
    assert refused.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
    assert "does not take such requests" in refused.value.message
    assert_routed(refused.value.response.headers, "refuse", "none")


def test_messages_stream_to_a_named_route(stack: Stack) -> None:
    sdk = messages_sdk(stack).messages
    raw = sdk.with_raw_response.create(
        model="mock-1", max_tokens=50, messages=MESSAGES, stream=True, extra_headers=via("route")
    )
    assert_routed(raw.headers, "route", "weighted")
    events = [event.type for event in raw.parse()]
    assert events[-1] == "message_stop"


@pytest.mark.parametrize(
    ("model", "rule_id", "cap"), [("claude-test", "cap", 3), ("mock-1", "passthrough-cap", 2)]
)
def test_messages_passthrough_sends_the_capped_body(
    stack: Stack, claude: FakeAnthropic, model: str, rule_id: str, cap: int
) -> None:
    """An Anthropic target is sent the client's own bytes when its model is the one asked
    for (claude-test), unless a rule changed them; a named route with a cap, too."""
    claude.reset()
    raw = messages_sdk(stack).messages.with_raw_response.create(
        model=model, max_tokens=50, messages=MESSAGES, extra_headers=via(rule_id)
    )
    assert_routed(raw.headers, rule_id)
    sent = claude.for_model("claude-test")
    assert len(sent) == 1 and sent[0].json["max_tokens"] == cap


# ---- embeddings ----------------------------------------------------------------------------


def test_embeddings_actions(stack: Stack) -> None:
    sdk = chat_sdk(stack).embeddings
    raw = sdk.with_raw_response.create(model="mock-1", input="hello")
    assert_routed(raw.headers, "default")
    raw = sdk.with_raw_response.create(model="mock-1", input="hello", extra_headers=via("route"))
    assert_routed(raw.headers, "route", "weighted")
    assert raw.headers["x-interlock-model"] in ("mock-big", "mock-big-2")
    raw = sdk.with_raw_response.create(model="mock-1", input="hello", extra_headers=via("rewrite"))
    assert raw.headers["x-interlock-model"] == "mock-small"
    raw = sdk.with_raw_response.create(model="mock-1", input="hello", extra_headers=via("cap"))
    assert_routed(raw.headers, "cap")  # nothing to cap in an embeddings request: served
    assert len(raw.parse().data) == 1
    raw = sdk.with_raw_response.create(model="mock-1", input="hello", extra_headers=via("ceiling"))
    assert_routed(raw.headers, "ceiling")
    with pytest.raises(openai.PermissionDeniedError) as refused:
        sdk.create(model="mock-1", input="hello", extra_headers=via("refuse"))
    assert refused.value.code == "policy_refused"
    assert_routed(refused.value.response.headers, "refuse", "none")
