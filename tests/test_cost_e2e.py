"""The cost of each answer, told to the client, through edge and core with the official SDKs:
`x-interlock-cost` on complete answers of every API, `usage.interlock_cost` in a stream's final
usage; and the operator's refusal of unpriced models.

The built-in mock is priced in the shipped catalogue (mock-1: $1 in, $2 out per million tokens,
so p prompt and c completion tokens cost p + 2c micro-dollars), and an operator entry prices
mock-large at $10 / $20. A DeepSeek provider (the deepseek preset on tests/support/fake_openai)
reports its cache hits in DeepSeek's own usage fields.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest

from tests.support.fake_openai import DEEPSEEK_USAGE, FakeOpenAI
from tests.support.sdk import anthropic_client, client
from tests.support.stack import Stack

MESSAGES = [{"role": "user", "content": "Say hello to the cost of things"}]


@pytest.fixture(scope="module")
def deepseek() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, deepseek: FakeOpenAI) -> Iterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("cost")
    overrides = {
        "providers": {
            "deepseek": {
                "kind": "openai",
                "base_url": deepseek.base_url,
                "api_key": "sk-deepseek",
                "options": {"preset": "deepseek"},
            }
        },
        "models": {
            "ds": {"provider": "deepseek", "model": "deepseek-chat"},
            "mock-1": {"provider": "mock", "model": "mock-1"},
            "mock-large": {"provider": "mock", "model": "mock-large"},
            "secret": {"provider": "mock", "model": "secret-model"},
            "secret-then-mock": {
                "targets": [
                    {"provider": "mock", "model": "secret-model"},
                    {"provider": "mock", "model": "mock-1"},
                ]
            },
        },
        "prices": {
            "models": {
                "mock/mock-large": {"input": 10, "output": "20", "source": "test contract"},
                "mock/secret-model": {"unpriced": "refuse"},
            }
        },
    }
    running = Stack(workdir, overrides).start()
    yield running
    running.stop()


def micros(dollars: str) -> int:
    whole, _, frac = dollars.partition(".")
    assert len(frac) == 6
    return int(whole) * 1_000_000 + int(frac)


def test_chat_completion_carries_its_cost_header(stack: Stack) -> None:
    raw = client(stack).chat.completions.with_raw_response.create(model="mock-1", messages=MESSAGES)
    usage = raw.parse().usage
    assert usage is not None and usage.prompt_tokens > 0
    expected = usage.prompt_tokens * 1 + usage.completion_tokens * 2
    assert micros(raw.headers["x-interlock-cost"]) == expected
    assert "x-interlock-cost-estimated" not in raw.headers


def test_operator_price_applies(stack: Stack) -> None:
    raw = client(stack).chat.completions.with_raw_response.create(
        model="mock-large", messages=MESSAGES
    )
    usage = raw.parse().usage
    assert usage is not None
    expected = usage.prompt_tokens * 10 + usage.completion_tokens * 20
    assert micros(raw.headers["x-interlock-cost"]) == expected


def test_stream_usage_chunk_carries_the_cost_and_the_sdk_parses_it(stack: Stack) -> None:
    stream = client(stack).chat.completions.create(
        model="mock-1", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    [final] = [chunk for chunk in chunks if chunk.usage is not None]
    assert final.choices == []
    usage = final.usage
    assert usage is not None
    extra = usage.model_extra or {}
    expected = usage.prompt_tokens + 2 * usage.completion_tokens
    assert micros(extra["interlock_cost"]) == expected
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text


def test_stream_without_usage_sends_no_cost(stack: Stack) -> None:
    chunks = list(
        client(stack).chat.completions.create(model="mock-1", messages=MESSAGES, stream=True)
    )
    assert all(chunk.usage is None for chunk in chunks)


def test_embeddings_carry_their_cost_header(stack: Stack) -> None:
    raw = client(stack).embeddings.with_raw_response.create(model="mock-1", input="hello there")
    usage = raw.parse().usage
    assert micros(raw.headers["x-interlock-cost"]) == usage.prompt_tokens * 1


def test_anthropic_message_carries_its_cost_header(stack: Stack) -> None:
    raw = anthropic_client(stack).messages.with_raw_response.create(
        model="mock-1", max_tokens=50, messages=MESSAGES
    )
    usage = raw.parse().usage
    expected = usage.input_tokens + 2 * usage.output_tokens
    assert micros(raw.headers["x-interlock-cost"]) == expected


def test_anthropic_stream_message_delta_carries_the_cost(stack: Stack) -> None:
    with anthropic_client(stack).messages.stream(
        model="mock-1", max_tokens=50, messages=MESSAGES
    ) as stream:
        events = list(stream)
        message = stream.get_final_message()
    [delta] = [event for event in events if event.type == "message_delta"]
    extra = delta.usage.model_extra or {}
    usage = message.usage
    assert usage.output_tokens > 0
    assert micros(extra["interlock_cost"]) == usage.input_tokens + 2 * usage.output_tokens


def test_unpriced_model_refused_in_each_api_envelope(stack: Stack) -> None:
    with pytest.raises(openai.PermissionDeniedError) as openai_error:
        client(stack).chat.completions.create(model="secret", messages=MESSAGES)
    assert openai_error.value.status_code == 403
    body = openai_error.value.body
    assert isinstance(body, dict)
    assert body["code"] == "model_unpriced" and body["param"] == "model"
    with pytest.raises(anthropic.PermissionDeniedError) as anthropic_error:
        anthropic_client(stack).messages.create(model="secret", max_tokens=5, messages=MESSAGES)
    assert "no price" in str(anthropic_error.value)


def test_a_refused_target_fails_over_to_a_priced_one(stack: Stack) -> None:
    raw = client(stack).chat.completions.with_raw_response.create(
        model="secret-then-mock", messages=MESSAGES
    )
    assert raw.headers["x-interlock-model"] == "mock-1"
    assert raw.headers["x-interlock-attempts"] == "1"
    assert micros(raw.headers["x-interlock-cost"]) > 0


# The fake's DeepSeek usage: 1800 prompt tokens of which 1536 cache hits, 120 completion tokens.
# deepseek-chat: 264*0.28 + 1536*0.028 + 120*0.42 = 73.92 + 43.008 + 50.4 = 167.328 -> 167
# (554 if the hits were billed as misses).
DEEPSEEK_MICROS = 167


def test_deepseek_cache_hits_are_priced_as_reads(stack: Stack) -> None:
    assert DEEPSEEK_USAGE["prompt_cache_hit_tokens"] == 1536
    raw = client(stack).chat.completions.with_raw_response.create(model="ds", messages=MESSAGES)
    usage = raw.parse().usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 1536  # OpenAI's field, for every client
    assert micros(raw.headers["x-interlock-cost"]) == DEEPSEEK_MICROS


def test_deepseek_stream_usage_chunk_prices_the_hits(stack: Stack) -> None:
    stream = client(stack).chat.completions.create(
        model="ds", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    [usage] = [chunk.usage for chunk in stream if chunk.usage is not None]
    assert micros((usage.model_extra or {})["interlock_cost"]) == DEEPSEEK_MICROS


def test_deepseek_hits_reach_anthropic_clients_as_cache_reads(stack: Stack) -> None:
    raw = anthropic_client(stack).messages.with_raw_response.create(
        model="ds", max_tokens=50, messages=MESSAGES
    )
    usage = raw.parse().usage
    assert usage.cache_read_input_tokens == 1536 and usage.input_tokens == 264
    assert micros(raw.headers["x-interlock-cost"]) == DEEPSEEK_MICROS
