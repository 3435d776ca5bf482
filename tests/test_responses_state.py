"""Stored responses through a real edge and core backed by the test session's Redis:
`previous_response_id` carries a conversation across providers, GET and DELETE
/v1/responses/{id} serve the caller's tenant only, and `store: false` keeps nothing.

Each turn of the three-turn conversation goes to a different provider (an OpenAI-compatible
chat host, Anthropic, Gemini), and each upstream must receive the earlier turns; a fourth turn
on OpenAI's own Responses API (passthrough) gets them inlined as input items, never the
gateway's id.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
import redis

from tests.support import raw
from tests.support.fake_anthropic import TEXT as CLAUDE_TEXT
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_gemini import TEXT as GEMINI_TEXT
from tests.support.fake_gemini import FakeGemini
from tests.support.fake_openai import TEXT, FakeOpenAI
from tests.support.stack import Stack


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    redis_url: str,
    fake: FakeOpenAI,
    claude: FakeAnthropic,
    gemini: FakeGemini,
) -> Iterator[Stack]:
    compat = {"kind": "openai", "base_url": fake.base_url, "api_key": "sk-up"}
    overrides = {
        "providers": {
            "fake": {**compat, "allow_any_model": True},
            "native": {**compat, "options": {"preset": "openai"}, "allow_any_model": True},
            "claude": {"kind": "anthropic", "base_url": claude.url, "api_key": "sk-ant"},
            "gemini": {"kind": "gemini", "base_url": gemini.url, "api_key": gemini.api_key},
        },
        "models": {
            "gpt-fake": {"provider": "fake", "model": "gpt-fake"},
            "gpt-native": {"provider": "native", "model": "gpt-5"},
            "claude": {"provider": "claude", "model": "claude-x"},
            "gemini": {"provider": "gemini", "model": "gemini-2.5-flash"},
        },
        "state": {"redis_url": redis_url},
    }
    running = Stack(tmp_path_factory.mktemp("responses-state"), overrides).start()
    yield running
    running.stop()


def client(stack: Stack, tenant: str = "acme") -> openai.OpenAI:
    token = stack.token(tenant=tenant)
    return openai.OpenAI(base_url=f"{stack.edge_url}/v1", api_key=token, max_retries=0)


def texts(value: Any) -> list[str]:
    """Every `text` or `content` string under a JSON value, in order (what an upstream was
    told, in any provider's shape)."""
    if isinstance(value, dict):
        return [
            t
            for k, v in value.items()
            for t in ([v] if isinstance(v, str) and k in ("text", "content") else texts(v))
        ]
    if isinstance(value, list):
        return [t for v in value for t in texts(v)]
    return []


def test_a_conversation_carries_over_across_providers(
    stack: Stack, fake: FakeOpenAI, claude: FakeAnthropic, gemini: FakeGemini
) -> None:
    sdk = client(stack)
    first = sdk.responses.create(model="gpt-fake", input="My name is Ada.", instructions="Terse.")
    assert first.output_text == TEXT and first.store
    second = sdk.responses.create(
        model="claude", input="What is my name?", previous_response_id=first.id
    )
    assert second.output_text == CLAUDE_TEXT and second.previous_response_id == first.id
    told_claude = texts(claude.received[-1].json["messages"])
    assert told_claude[:3] == ["My name is Ada.", TEXT, "What is my name?"]
    with sdk.responses.stream(
        model="gemini", input="And again?", previous_response_id=second.id
    ) as stream:
        third = stream.get_final_response()
    assert third.output_text == GEMINI_TEXT
    told_gemini = texts(gemini.received[-1].json["contents"])
    assert told_gemini == [
        "My name is Ada.",
        TEXT,
        "What is my name?",
        CLAUDE_TEXT,
        "And again?",
    ]
    # Instructions are the request's own: the first turn's are not carried over.
    assert "Terse." not in texts(gemini.received[-1].json)
    fourth = sdk.responses.create(
        model="gpt-native", input="Last one.", previous_response_id=third.id
    )
    sent = fake.received[-1].json
    assert fake.received[-1].path == "/v1/responses" and "previous_response_id" not in sent
    assert texts(sent["input"]) == [*told_gemini, GEMINI_TEXT, "Last one."]
    assert sdk.responses.retrieve(fourth.id).output_text == TEXT


def test_get_and_delete_are_the_tenants_own(stack: Stack, redis_url: str) -> None:
    owner, other = client(stack, "acme"), client(stack, "globex")
    created = owner.responses.create(model="gpt-fake", input="keep this")
    fetched = owner.responses.retrieve(created.id)
    assert fetched.id == created.id and fetched.output_text == TEXT
    stored = redis.Redis.from_url(redis_url).keys(f"interlock:responses:*{created.id}")
    assert len(stored) == 1 and b"acme" in stored[0]  # in Redis, under the tenant's key

    missing = raw.request(
        "GET", f"{stack.edge_url}/v1/responses/resp_never", None, auth(stack, "globex")
    )
    for method in ("GET", "DELETE"):
        theirs = raw.request(
            method, f"{stack.edge_url}/v1/responses/{created.id}", None, auth(stack, "globex")
        )
        assert theirs.status == 404
        assert theirs.json()["error"] == {
            **missing.json()["error"],
            "message": missing.json()["error"]["message"].replace("resp_never", created.id),
        }
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="gpt-fake", input="x", previous_response_id=created.id)
    assert owner.responses.retrieve(created.id).id == created.id  # untouched by globex

    owner.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        owner.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        owner.responses.delete(created.id)


def test_store_false_keeps_nothing(stack: Stack) -> None:
    sdk = client(stack)
    created = sdk.responses.create(model="gpt-fake", input="forget this", store=False)
    assert created.store is False
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(created.id)
    with sdk.responses.stream(model="claude", input="also this", store=False) as stream:
        streamed = stream.get_final_response()
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(streamed.id)


def test_a_streamed_response_is_stored_before_it_completes(stack: Stack) -> None:
    sdk = client(stack)
    for event in sdk.responses.create(model="claude", input="hi", stream=True):
        if event.type == "response.completed":  # the client may follow up right away
            assert sdk.responses.retrieve(event.response.id).output_text == CLAUDE_TEXT
            break
    else:
        raise AssertionError("no response.completed")


def auth(stack: Stack, tenant: str) -> dict[str, str]:
    return {"authorization": f"Bearer {stack.token(tenant=tenant)}"}
