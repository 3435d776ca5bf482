"""Anthropic's token counter and the contract's reply reader (core.providers.adapters.counting):
pure builds and parses. Gemini's and Bedrock's: test_count_tokens_adapters.py; what each
provider's fake accepts, over sockets: the e2e tests (test_count_tokens*_e2e.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from core.providers.adapters.anthropic.counting import ANTHROPIC_COUNTER
from core.providers.adapters.base import ProviderError, Target
from core.providers.adapters.counting import CountInput, reply_count
from shared.config import ProviderConfig
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
