"""Property-based fuzzer: thousands of mutated requests per endpoint through the edge, no 5xx.

Issue 8 asks that no input from a client ever produces a 5xx. Each endpoint gets at least
MIN_CASES mutated requests (see tests/support/fuzz.py for the mutations) over one keep-alive
connection to the real edge, which relays to the real core, which serves them from the mock and
from fake OpenAI, Anthropic, Gemini and Bedrock upstreams (lenient routes, so most fields reach
the translators). Any 5xx, dropped connection, non-JSON body or error outside the API's envelope
fails the test with the case, and the seed that reproduces it is printed; so does any request
that got past validation only to be caught by the translation backstop (a gap to close at the
root), which the core logs.

Runtime: about 3-4 ms a case on 2 cores, so 10 s or less per endpoint for MIN_CASES.

Seed: FUZZ_SEED, or INTERLOCK_FUZZ_SEED from the environment to explore other corners.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import urllib3
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_azure import FakeAzure
from tests.support.fake_bedrock import ACCESS_KEY, SECRET_KEY, SESSION_TOKEN
from tests.support.fake_embeddings import (
    FakeBedrockEmbeddings,
    FakeGeminiEmbeddings,
    FakeOpenAIEmbeddings,
)
from tests.support.fake_openai import FakeOpenAI
from tests.support.fuzz import Api, Client, envelope_problem, mutated
from tests.support.stack import Stack

FUZZ_SEED = int(os.environ.get("INTERLOCK_FUZZ_SEED", "20261201"))
MIN_CASES = int(os.environ.get("INTERLOCK_FUZZ_CASES", "2000"))
TITAN = "amazon.titan-embed-text-v2:0"

PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH"
    "/iZk9HQAAAABJRU5ErkJggg=="
)
SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 2},
        "days": {"type": "array", "items": {"type": "integer"}, "minItems": 1},
        "unit": {"enum": ["c", "f"]},
    },
    "required": ["city", "days"],
}
TOOLS = [
    {"type": "function", "function": {"name": "weather", "description": "w", "parameters": SCHEMA}}
]


def _chat_seeds(model: str) -> list[dict[str, Any]]:
    history = [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hi"},
                {"type": "image_url", "image_url": {"url": PNG}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"x"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "user", "content": "and tomorrow?"},
    ]
    if model == "gemini-fake":  # Gemini wants a thought signature on replayed calls
        history = [m for m in history if m["role"] not in ("assistant", "tool")]
    response_format: dict[str, Any] = {
        "type": "json_schema",
        "json_schema": {"name": "w", "schema": SCHEMA, "strict": True},
    }
    if model == "deepseek-fake":  # no images, no json_schema
        history[1] = {"role": "user", "content": [{"type": "text", "text": "hi"}]}
        response_format = {"type": "json_object"}
    return [
        {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16},
        {
            "model": model,
            "messages": history,
            "tools": TOOLS,
            "tool_choice": {"type": "function", "function": {"name": "weather"}},
            "temperature": 0.5,
            "top_p": 0.9,
            "n": 1,
            "stop": ["\n\n"],
            "user": "u1",
            "seed": 7,
        },
        {
            "model": model,
            "messages": [
                {"role": "developer", "content": "json"},
                {"role": "user", "content": "hi"},
            ],
            "response_format": response_format,
            "max_completion_tokens": 2048,
            "reasoning_effort": "low",
        },
        {
            "model": model,
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "tools": TOOLS,
            "tool_choice": "auto",
        },
    ]


def _messages_seeds(model: str) -> list[dict[str, Any]]:
    seeds: list[dict[str, Any]] = [
        {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]},
        {
            "model": model,
            "max_tokens": 64,
            "system": [{"type": "text", "text": "be brief"}],
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "hi"},
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": "image/png",
                                "data": PNG[22:],
                            },
                        },
                    ],
                },
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "x"}}
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t1",
                            "content": [{"type": "text", "text": "sunny"}],
                        }
                    ],
                },
            ],
            "tools": [{"name": "weather", "description": "w", "input_schema": SCHEMA}],
            "tool_choice": {"type": "tool", "name": "weather"},
            "temperature": 0.5,
            "top_k": 5,
            "stop_sequences": ["END"],
            "metadata": {"user_id": "u1"},
        },
        {
            "model": model,
            "max_tokens": 2048,
            "stream": True,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "he"}],
        },
    ]
    if model == "gemini-fake":  # Gemini wants a thought signature on replayed calls
        seeds[1]["messages"] = seeds[1]["messages"][:1]
    if model == "deepseek-fake":  # no images
        seeds[1]["messages"][0]["content"] = seeds[1]["messages"][0]["content"][:1]
    return seeds


def _embeddings_seeds(model: str) -> list[dict[str, Any]]:
    seeds: list[dict[str, Any]] = [
        {"model": model, "input": "hello"},
        {"model": model, "input": ["a", "b"], "encoding_format": "base64", "dimensions": 256},
    ]
    if model in ("mock-embed", "oai-embed"):  # only these take token ids
        seeds.append({"model": model, "input": [[1, 2, 3], [4]], "user": "u"})
    return seeds


CHAT_MODELS = (
    "mock-1",
    "gpt-fake",
    "claude-fake",
    "gemini-fake",
    "bedrock-fake",
    "azure-fake",
    "mistral-fake",
    "deepseek-fake",
)
EMBED_MODELS = ("mock-embed", "oai-embed", "gemini-embed", "titan")
CHAT_SEEDS = [s for m in CHAT_MODELS for s in _chat_seeds(m)]
MESSAGES_SEEDS = [s for m in CHAT_MODELS for s in _messages_seeds(m)]
EMBEDDINGS_SEEDS = [s for m in EMBED_MODELS for s in _embeddings_seeds(m)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    fakes = (
        FakeOpenAI(),
        FakeAnthropic(),
        FakeGeminiEmbeddings(),
        FakeBedrockEmbeddings(),
        FakeOpenAIEmbeddings(),
        FakeAzure(),
    )
    for fake in fakes:
        fake.start()
    openai_chat, claude, gemini, bedrock, openai_embed, azure = fakes
    bedrock_options = {
        "region": "us-east-1",
        "access_key_id": ACCESS_KEY,
        "secret_access_key": SECRET_KEY,
        "session_token": SESSION_TOKEN,
    }
    lenient = "lenient"
    overrides = {
        "providers": {
            "mock": {"kind": "mock", "allow_any_model": True},
            "fake": {"kind": "openai", "base_url": openai_chat.base_url, "api_key": "sk-fuzz"},
            "claude": {"kind": "anthropic", "base_url": claude.url, "api_key": "sk-ant-fuzz"},
            "gemini": {"kind": "gemini", "base_url": gemini.url, "api_key": gemini.api_key},
            "bedrock": {"kind": "bedrock", "base_url": bedrock.url, "options": bedrock_options},
            "azure": {"kind": "azure", "base_url": azure.url, "api_key": azure.api_key},
            "mistral": {
                "kind": "openai",
                "base_url": openai_chat.base_url,
                "api_key": "sk-fuzz",
                "options": {"preset": "mistral"},
            },
            "deepseek": {
                "kind": "openai",
                "base_url": openai_chat.base_url,
                "api_key": "sk-fuzz",
                "options": {"preset": "deepseek"},
            },
            "oai-embed": {
                "kind": "openai",
                "base_url": f"{openai_embed.url}/v1",
                "api_key": openai_embed.api_key,
            },
        },
        "models": {
            "mock-1": {"provider": "mock", "model": "mock-1", "params": lenient},
            "gpt-fake": {"provider": "fake", "model": "gpt-fake", "params": lenient},
            "claude-fake": {"provider": "claude", "model": "claude-test", "params": lenient},
            "gemini-fake": {"provider": "gemini", "model": "gemini-2.5-flash", "params": lenient},
            "bedrock-fake": {
                "provider": "bedrock",
                "model": "anthropic.claude-3-haiku-20240307-v1:0",
                "params": lenient,
            },
            "azure-fake": {"provider": "azure", "model": "gpt-4o", "params": lenient},
            "mistral-fake": {"provider": "mistral", "model": "mistral-small", "params": lenient},
            "deepseek-fake": {"provider": "deepseek", "model": "deepseek-chat", "params": lenient},
            "mock-embed": {"provider": "mock", "model": "mock-embed"},
            "oai-embed": {
                "provider": "oai-embed",
                "model": "text-embedding-3-small",
                "params": lenient,
            },
            "gemini-embed": {
                "provider": "gemini",
                "model": "text-embedding-004",
                "params": lenient,
            },
            "titan": {"provider": "bedrock", "model": TITAN, "params": lenient},
        },
        # Limits on, far above what the fuzzer uses: admission's estimates run on every case.
        "limits": {"tiers": {"fuzz": {"rpm": 10_000_000, "tpm": 10_000_000_000}}},
    }
    running = Stack(tmp_path_factory.mktemp("fuzz"), overrides).start()
    yield running
    running.stop()
    for fake in fakes:
        fake.stop()


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[Client]:
    session = Client(stack.edge_url, stack.token(tenant="fuzzer", tier="fuzz"))
    yield session
    session.close()


def _encode(body: Any) -> bytes | None:
    """The case as bytes, or None for one the fuzzer must not send: a URL would make the core
    fetch an image, and tests reach nothing beyond loopback."""
    data = orjson.dumps(body)
    return None if b"://" in data else data


# Lines the gateway logs when validation missed a shape (the translation backstop answered 400)
# or when anything escaped to the last-resort handler: either is a gap to close at the root.
GAP_NEEDLES = ("could not translate a request", "unhandled error", "Traceback")


def _gaps(stack: Stack) -> list[str]:
    return [line for line in stack.read_logs().splitlines() if any(n in line for n in GAP_NEEDLES)]


def _fuzz(stack: Stack, client: Client, path: str, api: Api, seeds: list[dict[str, Any]]) -> int:
    before = len(_gaps(stack))
    ran = 0
    statuses: Counter[int] = Counter()

    @seed(FUZZ_SEED)
    @settings(
        max_examples=MIN_CASES + 100,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def case(data: st.DataObject) -> None:
        nonlocal ran
        body = _encode(data.draw(mutated(seeds), label="body"))
        if body is None:
            return
        try:
            answer = client.post(path, body)
        except urllib3.exceptions.HTTPError as exc:  # a reset or a stream cut short
            raise AssertionError(f"{path}: {exc!r} (seed {FUZZ_SEED}) for {body[:2000]!r}") from exc
        ran += 1
        statuses[answer.status] += 1
        problem = envelope_problem(answer, api)
        assert problem is None, (
            f"{path} gave {problem} (seed {FUZZ_SEED}): HTTP {answer.status} "
            f"{answer.body[:500]!r} for {body[:2000]!r}"
        )

    case()
    print(f"{path}: {ran} cases, seed {FUZZ_SEED}, statuses {dict(sorted(statuses.items()))}")
    gaps = _gaps(stack)[before:]
    assert not gaps, f"{path}: validation gaps logged (seed {FUZZ_SEED}): {gaps[:5]}"
    return ran


@pytest.mark.timeout(300)
def test_fuzz_chat_completions(stack: Stack, client: Client) -> None:
    ran = _fuzz(stack, client, "/v1/chat/completions", "openai", CHAT_SEEDS)
    assert ran >= MIN_CASES, f"only {ran} chat cases ran (seed {FUZZ_SEED})"


@pytest.mark.timeout(300)
def test_fuzz_messages(stack: Stack, client: Client) -> None:
    ran = _fuzz(stack, client, "/v1/messages", "anthropic", MESSAGES_SEEDS)
    assert ran >= MIN_CASES, f"only {ran} messages cases ran (seed {FUZZ_SEED})"


@pytest.mark.timeout(300)
def test_fuzz_embeddings(stack: Stack, client: Client) -> None:
    ran = _fuzz(stack, client, "/v1/embeddings", "openai", EMBEDDINGS_SEEDS)
    assert ran >= MIN_CASES, f"only {ran} embeddings cases ran (seed {FUZZ_SEED})"


def test_seed_requests_are_served(client: Client) -> None:
    """The seeds themselves are valid: mutations start from requests the gateway serves."""
    for path, seeds in (
        ("/v1/chat/completions", CHAT_SEEDS),
        ("/v1/messages", MESSAGES_SEEDS),
        ("/v1/embeddings", EMBEDDINGS_SEEDS),
    ):
        for body in seeds:
            answer = client.post(path, orjson.dumps(body))
            assert answer.status == 200, (path, body, answer.body[:300])
