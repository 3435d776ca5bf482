"""POST /v1/embeddings: the official OpenAI SDK -> edge -> core -> fake providers, over loopback.

The SDK asks for base64 unless told otherwise and decodes it as float32, so every provider is
exercised in both encodings. The fakes reject what the real APIs reject (see
tests/support/fake_embeddings.py), Bedrock's verifies SigV4 over the bytes and path it got.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.support import raw
from tests.support.fake_bedrock import ACCESS_KEY, SECRET_KEY, SESSION_TOKEN
from tests.support.fake_embeddings import (
    FakeBedrockEmbeddings,
    FakeGeminiEmbeddings,
    FakeOpenAIEmbeddings,
    fake_vector,
    words,
)
from tests.support.net import free_port
from tests.support.stack import Stack

TITAN = "amazon.titan-embed-text-v2:0"
COHERE = "us.cohere.embed-v4:0"
TEXTS = ["hello world", "the quick brown fox", "embeddings"]


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeOpenAIEmbeddings, FakeGeminiEmbeddings, FakeBedrockEmbeddings]]:
    servers = (FakeOpenAIEmbeddings(), FakeGeminiEmbeddings(), FakeBedrockEmbeddings())
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def oai(fakes: tuple[Any, ...]) -> FakeOpenAIEmbeddings:
    return fakes[0]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def gemini(fakes: tuple[Any, ...]) -> FakeGeminiEmbeddings:
    return fakes[1]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def bedrock(fakes: tuple[Any, ...]) -> FakeBedrockEmbeddings:
    return fakes[2]  # type: ignore[no-any-return]


def _bedrock(url: str, secret: str = SECRET_KEY) -> dict[str, Any]:
    options = {
        "region": "us-east-1",
        "access_key_id": ACCESS_KEY,
        "secret_access_key": secret,
        "session_token": SESSION_TOKEN,
    }
    return {"kind": "bedrock", "base_url": url, "allow_any_model": True, "options": options}


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    oai: FakeOpenAIEmbeddings,
    gemini: FakeGeminiEmbeddings,
    bedrock: FakeBedrockEmbeddings,
) -> Iterator[Stack]:
    vertex = {"vertex": {"project": "proj-1", "location": "us-central1"}}
    compat = {"kind": "openai", "base_url": f"{oai.url}/v1", "api_key": oai.api_key}
    azure = {"kind": "azure", "base_url": oai.url, "api_key": oai.azure_key}
    google = {"kind": "gemini", "base_url": gemini.url, "allow_any_model": True}
    overrides = {
        "providers": {
            "oai": {**compat, "allow_any_model": True},
            "mistralish": {**compat, "options": {"preset": "mistral"}},
            "azure": azure,
            "azure-dated": {**azure, "options": {"api_version": "2024-10-21"}},
            "gemini": {**google, "api_key": gemini.api_key},
            "vertex": {**google, "api_key": gemini.token, "options": vertex},
            "bedrock": _bedrock(bedrock.url),
            "bedrock-wrong": _bedrock(bedrock.url, "not-the-secret"),
            "claude": {
                "kind": "anthropic",
                "base_url": f"http://127.0.0.1:{free_port()}",
                "api_key": "sk-ant-unused",
            },
        },
        "models": {
            "mock-embed": {"provider": "mock", "model": "mock-embed"},
            "oai-embed": {"provider": "oai", "model": "text-embedding-3-small"},
            "mistral-embed": {"provider": "mistralish", "model": "mistral-embed"},
            "azure-embed": {"provider": "azure", "model": "emb-deploy"},
            "azure-dated-embed": {"provider": "azure-dated", "model": "emb-deploy"},
            "gemini-embed": {"provider": "gemini", "model": "text-embedding-004"},
            "vertex-embed": {"provider": "vertex", "model": "gemini-embedding-001"},
            "titan": {"provider": "bedrock", "model": TITAN},
            "cohere": {"provider": "bedrock", "model": COHERE},
            "titan-wrong-key": {"provider": "bedrock-wrong", "model": TITAN},
            "claude": {"provider": "claude", "model": "claude-x"},
            "embed-failover": {
                "targets": [
                    {"provider": "oai", "model": "fail-429"},
                    {"provider": "mock", "model": "mock-embed"},
                ]
            },
            "bedrock-failover": {
                "targets": [
                    {"provider": "bedrock", "model": f"throttle.{TITAN}"},
                    {"provider": "bedrock", "model": TITAN},
                ]
            },
            "rate-limited": {"provider": "oai", "model": "fail-429"},
            "text-only": {
                "targets": [
                    {"provider": "claude", "model": "claude-x"},
                    {"provider": "gemini", "model": "text-embedding-004"},
                ]
            },
        },
        "limits": {"tiers": {"tiny": {"tpm": 50}, "default": {}}},
    }
    running = Stack(tmp_path_factory.mktemp("embeddings-stack"), overrides).start()
    yield running
    running.stop()


def client(stack: Stack, **token: Any) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{stack.edge_url}/v1", api_key=stack.token(**token), max_retries=0
    )


def post(stack: Stack, body: dict[str, Any], **token: Any) -> raw.RawResponse:
    return raw.post(f"{stack.edge_url}/v1/embeddings", body, stack.token(**token))


def decode(value: str) -> list[float]:
    data = base64.b64decode(value)
    return list(struct.unpack(f"<{len(data) // 4}f", data))


def firsts(response: Any) -> list[float]:
    return [item.embedding[0] for item in response.data]


# ---- mock ----------------------------------------------------------------------------------


def test_sdk_default_base64_and_float_agree_through_mock(stack: Stack) -> None:
    sdk = client(stack)
    default = sdk.embeddings.with_raw_response.create(model="mock-embed", input="hello")
    as_float = sdk.embeddings.create(model="mock-embed", input="hello", encoding_format="float")
    decoded = default.parse()
    assert len(decoded.data[0].embedding) == 256
    assert decoded.data[0].embedding == as_float.data[0].embedding  # float32-exact both ways
    assert default.headers["x-interlock-provider"] == "mock"
    assert default.headers["x-request-id"].startswith("req_")
    assert "x-interlock-usage-estimated" not in default.headers
    wire = post(stack, {"model": "mock-embed", "input": "hello", "encoding_format": "base64"})
    assert decode(wire.json()["data"][0]["embedding"]) == as_float.data[0].embedding


def test_list_input_and_dimensions_through_mock(stack: Stack) -> None:
    response = client(stack).embeddings.create(model="mock-embed", input=TEXTS, dimensions=32)
    assert [item.index for item in response.data] == [0, 1, 2]
    assert all(len(item.embedding) == 32 for item in response.data)
    assert len({tuple(item.embedding) for item in response.data}) == 3
    assert response.usage.prompt_tokens == response.usage.total_tokens > 0
    assert response.model == "mock-embed"


# ---- OpenAI-compatible and Azure -----------------------------------------------------------


def test_openai_passthrough_base64_and_token_ids(stack: Stack, oai: FakeOpenAIEmbeddings) -> None:
    oai.reset()
    response = client(stack).embeddings.create(model="oai-embed", input=TEXTS, dimensions=4)
    assert firsts(response) == [len(t) / 8 for t in TEXTS]
    assert response.usage.prompt_tokens == sum(words(t) for t in TEXTS)  # the host's, not ours
    [sent] = oai.received
    assert sent.json == {
        "model": "text-embedding-3-small",
        "input": TEXTS,
        "dimensions": 4,
        "encoding_format": "base64",
    }
    assert sent.headers["Authorization"] == f"Bearer {oai.api_key}"
    ids = client(stack).embeddings.create(
        model="oai-embed", input=[[1, 2, 3], [4, 5]], encoding_format="float"
    )
    assert firsts(ids) == [3 / 8, 2 / 8]
    assert oai.received[-1].json["input"] == [[1, 2, 3], [4, 5]]


def test_hosts_asked_for_floats_still_answer_base64(
    stack: Stack, oai: FakeOpenAIEmbeddings
) -> None:
    oai.reset()
    response = client(stack).embeddings.create(model="mistral-embed", input="hello world")
    assert response.data[0].embedding == fake_vector("hello world")
    assert "encoding_format" not in oai.received[0].json
    floats_only = post(
        stack, {"model": "oai/floats-only", "input": "abc", "encoding_format": "base64"}
    )
    assert decode(floats_only.json()["data"][0]["embedding"]) == fake_vector("abc")


def test_missing_usage_is_estimated_and_flagged(stack: Stack) -> None:
    response = post(stack, {"model": "oai/no-usage", "input": "sixteen chars!!!"})
    assert response.status == 200
    assert response.headers["x-interlock-usage-estimated"] == "true"
    assert response.json()["usage"] == {"prompt_tokens": 4, "total_tokens": 4}


@pytest.mark.parametrize(
    ("model", "path"),
    [
        ("azure-embed", "/openai/v1/embeddings"),
        ("azure-dated-embed", "/openai/deployments/emb-deploy/embeddings?api-version=2024-10-21"),
    ],
)
def test_azure_both_url_styles(
    stack: Stack, oai: FakeOpenAIEmbeddings, model: str, path: str
) -> None:
    oai.reset()
    response = client(stack).embeddings.create(model=model, input=["ab", "abcd"])
    assert firsts(response) == [2 / 8, 4 / 8]
    [sent] = oai.received
    assert sent.path == path
    assert sent.headers["api-key"] == oai.azure_key


# ---- Gemini --------------------------------------------------------------------------------


def test_gemini_ai_studio_batch(stack: Stack, gemini: FakeGeminiEmbeddings) -> None:
    gemini.reset()
    raw_response = client(stack).embeddings.with_raw_response.create(
        model="gemini-embed", input=TEXTS, dimensions=6
    )
    response = raw_response.parse()
    assert firsts(response) == [len(t) / 8 for t in TEXTS]
    assert all(len(item.embedding) == 6 for item in response.data)
    assert raw_response.headers["x-interlock-usage-estimated"] == "true"
    [sent] = gemini.received
    assert sent.path == "/v1beta/models/text-embedding-004:batchEmbedContents"
    assert sent.headers["x-goog-api-key"] == gemini.api_key
    assert sent.json["requests"][0] == {
        "model": "models/text-embedding-004",
        "content": {"parts": [{"text": TEXTS[0]}]},
        "outputDimensionality": 6,
    }


def test_vertex_gemini_embedding_one_instance_per_call(
    stack: Stack, gemini: FakeGeminiEmbeddings
) -> None:
    gemini.reset()
    raw_response = client(stack).embeddings.with_raw_response.create(
        model="vertex-embed", input=TEXTS, encoding_format="float"
    )
    response = raw_response.parse()
    assert firsts(response) == [len(t) / 8 for t in TEXTS]
    assert response.usage.prompt_tokens == sum(words(t) for t in TEXTS)
    assert "x-interlock-usage-estimated" not in raw_response.headers
    assert len(gemini.received) == 3
    assert {r.path for r in gemini.received} == {
        "/v1/projects/proj-1/locations/us-central1/publishers/google/models/"
        "gemini-embedding-001:predict"
    }
    assert sorted(r.json["instances"][0]["content"] for r in gemini.received) == sorted(TEXTS)


# ---- Bedrock -------------------------------------------------------------------------------


def test_titan_signed_one_call_per_input(stack: Stack, bedrock: FakeBedrockEmbeddings) -> None:
    bedrock.reset()
    response = client(stack).embeddings.create(model="titan", input=TEXTS, dimensions=256)
    assert firsts(response) == [len(t) / 8 for t in TEXTS]
    assert all(len(item.embedding) == 256 for item in response.data)
    assert response.usage.prompt_tokens == sum(words(t) for t in TEXTS)
    assert bedrock.rejected == []  # the fake recomputed every signature and they matched
    assert len(bedrock.received) == 3
    assert {r.path for r in bedrock.received} == {f"/model/{TITAN}/invoke"}
    assert all(r.headers["Authorization"].startswith("AWS4-HMAC-SHA256 ") for r in bedrock.received)
    assert sorted(r.json["inputText"] for r in bedrock.received) == sorted(TEXTS)


def test_cohere_one_batch_with_usage_header(stack: Stack, bedrock: FakeBedrockEmbeddings) -> None:
    bedrock.reset()
    response = client(stack).embeddings.create(model="cohere", input=TEXTS, dimensions=512)
    assert firsts(response) == [len(t) / 8 for t in TEXTS]
    assert response.usage.prompt_tokens == sum(words(t) for t in TEXTS)
    [sent] = bedrock.received
    assert sent.json == {"texts": TEXTS, "input_type": "search_document", "output_dimension": 512}
    assert bedrock.rejected == []


def test_a_wrong_aws_secret_is_refused_upstream(
    stack: Stack, bedrock: FakeBedrockEmbeddings
) -> None:
    bedrock.reset()
    response = post(stack, {"model": "titan-wrong-key", "input": "hi"})
    assert response.status == 502
    assert response.json()["error"]["code"] == "upstream_auth_failed"
    assert bedrock.rejected == ["InvalidSignatureException"]


# ---- failover and errors -------------------------------------------------------------------


def test_rate_limited_target_fails_over(stack: Stack, bedrock: FakeBedrockEmbeddings) -> None:
    response = client(stack).embeddings.with_raw_response.create(model="embed-failover", input="x")
    assert response.headers["x-interlock-provider"] == "mock"
    assert response.headers["x-interlock-attempts"] == "2"
    assert len(response.parse().data) == 1
    bedrock.reset()
    titan = client(stack).embeddings.with_raw_response.create(model="bedrock-failover", input="x")
    assert titan.headers["x-interlock-model"] == TITAN
    assert [r.path for r in bedrock.received] == [
        f"/model/throttle.{TITAN}/invoke",
        f"/model/{TITAN}/invoke",
    ]


def test_rate_limit_on_the_last_target_is_a_429_envelope(stack: Stack) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client(stack).embeddings.create(model="rate-limited", input="x")
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "3"
    assert caught.value.code == "rate_limit_exceeded"


def test_bad_input_is_a_400_naming_input(stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(stack).embeddings.create(model="mock-embed", input="")
    assert caught.value.param == "input"
    upstream = post(stack, {"model": "oai/bad-input", "input": "x"})
    assert (upstream.status, upstream.json()["error"]["param"]) == (400, "input")
    broken = post(stack, {"model": "oai/broken", "input": "x"})
    assert broken.status == 502


def test_models_that_cannot_embed_are_a_400_naming_the_field(stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(stack).embeddings.create(model="claude", input="x")
    assert caught.value.param == "model"
    tokens = post(stack, {"model": "text-only", "input": [1, 2, 3]})
    assert (tokens.status, tokens.json()["error"]["param"]) == (400, "input")


def test_token_model_restriction_is_a_403(stack: Stack) -> None:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client(stack, models=["mock-embed"]).embeddings.create(model="oai-embed", input="x")
    assert caught.value.param == "model"
    allowed = client(stack, models=["mock-embed"]).embeddings.create(model="mock-embed", input="x")
    assert len(allowed.data) == 1


def test_admission_reserves_input_tokens_only(stack: Stack) -> None:
    # tpm 50: a chat-style reservation (prompt + 1024 output) would refuse even a tiny input.
    small = post(stack, {"model": "mock-embed", "input": "hi"}, tier="tiny")
    assert small.status == 200
    assert small.headers["x-ratelimit-limit-tokens"] == "50"
    big = post(stack, {"model": "mock-embed", "input": "x" * 400}, tier="tiny")
    assert big.status == 429
    assert big.json()["error"]["code"] == "rate_limit_exceeded"


def test_usage_is_accounted_without_content(stack: Stack) -> None:
    marker = "embeddings-secret-marker-71"
    response = post(stack, {"model": "mock-embed", "input": marker})
    request_id = response.headers["x-request-id"]
    logs = stack.wait_for_log("interlock.usage", request_id)
    lines = [line for line in logs.splitlines() if request_id in line]
    assert any('"prompt_tokens":7' in line and '"outcome":"ok"' in line for line in lines)
    assert marker not in stack.read_logs()
