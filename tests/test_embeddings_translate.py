"""Embeddings, pure parts: validation, planning, and golden translations per provider."""

from __future__ import annotations

import array
import base64
import math
from typing import Any

import orjson
import pytest

from core.api.embeddings.plan import plan_embeddings as plan
from core.api.embeddings.request import EmbeddingRequest, validate_embeddings
from core.api.embeddings.response import encode, float32_base64
from core.providers.adapters.base import Capabilities, ProviderError, Target, UpstreamRequest
from core.providers.adapters.bedrock.embeddings import BedrockEmbeddings, family
from core.providers.adapters.gemini.embeddings import GEMINI
from core.providers.adapters.openai_embeddings import AZURE, OPENAI
from core.providers.mock_embeddings import MOCK, pseudo_embedding
from core.routing.registry import Candidate, Route
from shared.config import ProviderConfig
from shared.errors import FailureClass, GatewayError
from tests.support.providers import provider_of

BEDROCK = BedrockEmbeddings()


def provider(kind: str, name: str | None = None, **fields: Any) -> ProviderConfig:
    values: dict[str, Any] = {
        "base_url": None,
        "api_keys": ("key-1",),
        "headers": {},
        "timeout_s": None,
        "allow_any_model": True,
        "options": {"region": "us-east-1"} if kind == "bedrock" else {},  # required there
    }
    values.update(fields)
    return ProviderConfig(name=name or kind, kind=kind, **values)


def target(kind: str, model: str, **fields: Any) -> Target:
    config = provider(kind, **fields)
    return Target(provider_of(config), model, config.api_keys[0] if config.api_keys else None)


def request(**body: Any) -> EmbeddingRequest:
    return validate_embeddings({"model": "m", "input": "hello world", **body})


def reply(payload: Any, **headers: str) -> tuple[dict[str, str], bytes]:
    return headers, orjson.dumps(payload)


def bodies(requests: list[UpstreamRequest]) -> list[Any]:
    return [orjson.loads(r.body) for r in requests]


# ---- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": "m"}, "input"),
        ({"model": "m", "input": ""}, "input"),
        ({"model": "m", "input": []}, "input"),
        ({"model": "m", "input": ["a", ""]}, "input"),
        ({"model": "m", "input": ["a", 1]}, "input"),
        ({"model": "m", "input": [1, -2]}, "input"),
        ({"model": "m", "input": [1, True]}, "input"),
        ({"model": "m", "input": [[1], []]}, "input"),
        ({"model": "m", "input": [[1], "a"]}, "input"),
        ({"model": "m", "input": [1.5]}, "input"),
        ({"model": "m", "input": {"text": "a"}}, "input"),
        ({"model": "m", "input": ["a"] * 2049}, "input"),
        ({"model": "m", "input": "a", "encoding_format": "hex"}, "encoding_format"),
        ({"model": "m", "input": "a", "dimensions": 0}, "dimensions"),
        ({"model": "m", "input": "a", "dimensions": "8"}, "dimensions"),
        ({"model": "m", "input": "a", "dimensions": True}, "dimensions"),
        ({"model": "m", "input": "a", "user": 5}, "user"),
    ],
)
def test_invalid_requests_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as caught:
        validate_embeddings(body)
    assert (caught.value.status, caught.value.param) == (400, param)


def test_valid_input_shapes() -> None:
    assert validate_embeddings({"model": "m", "input": "a"}).texts == ("a",)
    many = validate_embeddings({"model": "m", "input": ["a", "b"], "encoding_format": None})
    assert (many.texts, many.count, many.encoding_format) == (("a", "b"), 2, "float")
    ids = validate_embeddings({"model": "m", "input": [1, 2, 3], "encoding_format": "base64"})
    assert (ids.token_lists, ids.count, ids.encoding_format) == (([1, 2, 3],), 1, "base64")
    lists = validate_embeddings({"model": "m", "input": [[1], [2, 3]], "dimensions": 64})
    assert (lists.token_lists, lists.uses_tokens, lists.dimensions) == (([1], [2, 3]), True, 64)


# ---- planning ------------------------------------------------------------------------------


def route(*targets: Target, strict: bool = True) -> Route:
    candidates = tuple(Candidate(t, None, Capabilities()) for t in targets)  # type: ignore[arg-type]
    return Route("r", candidates, strict, False)


def test_a_route_that_cannot_embed_is_a_400_naming_model() -> None:
    with pytest.raises(GatewayError) as caught:
        plan(route(target("anthropic", "claude-x"), target("bedrock", "claude")), request())
    assert (caught.value.status, caught.value.param) == (400, "model")
    assert caught.value.code == "model_not_supported"


def test_planning_skips_targets_that_cannot_serve_and_names_the_precise_field() -> None:
    gemini_chat = target("gemini", "gemini-2.5-flash")
    mock = target("mock", "mock-embed")
    attempts = plan(route(gemini_chat, mock), request())
    assert [a.target for a in attempts] == [mock]
    tokens = request(input=[1, 2])
    with pytest.raises(GatewayError) as caught:
        plan(route(target("anthropic", "c"), target("gemini", "text-embedding-004")), tokens)
    assert caught.value.param == "input"
    big = request(dimensions=300)
    with pytest.raises(GatewayError) as caught:
        plan(route(target("bedrock", "amazon.titan-embed-text-v2:0")), big)
    assert caught.value.param == "dimensions"


def test_strict_and_lenient_params() -> None:
    gemini = target("gemini", "text-embedding-004")
    with pytest.raises(GatewayError) as caught:
        plan(route(gemini), request(user="u1"))
    assert caught.value.param == "user"
    [attempt] = plan(route(gemini, strict=False), request(user="u1", dimensions=8))
    assert attempt.dropped == ("user",)
    assert "user" not in attempt.request.payload and attempt.request.dimensions == 8
    [passthrough] = plan(route(target("openai", "e")), request(user="u1", extra_thing=1))
    assert passthrough.dropped == ()


# ---- OpenAI-compatible and Azure -----------------------------------------------------------


def test_openai_passthrough_golden() -> None:
    t = target("openai", "text-embedding-3-small", base_url="http://host/v1")
    body = {"model": "alias", "input": ["a", "b"], "encoding_format": "base64", "dimensions": 8}
    [built] = OPENAI.build(validate_embeddings(body), t)
    assert built.url == "http://host/v1/embeddings"
    assert built.headers["authorization"] == "Bearer key-1"
    assert orjson.loads(built.body) == {**body, "model": "text-embedding-3-small"}


def test_hosts_without_base64_are_asked_for_floats() -> None:
    t = target("openai", "mistral-embed", options={"preset": "mistral"})
    built = OPENAI.build(request(encoding_format="base64"), t)
    assert built[0].url == "https://api.mistral.ai/v1/embeddings"
    assert bodies(built) == [{"model": "mistral-embed", "input": "hello world"}]
    assert OPENAI.problem(request(input=[1, 2]), t) == (
        "input",
        "openai/mistral-embed does not take token ids as input",
    )
    assert OPENAI.problem(request(), target("openai", "x", options={"preset": "deepseek"}))


@pytest.mark.parametrize(
    ("version", "url"),
    [
        (None, "https://res.openai.azure.com/openai/v1/embeddings"),
        ("preview", "https://res.openai.azure.com/openai/v1/embeddings?api-version=preview"),
        (
            "2024-10-21",
            "https://res.openai.azure.com/openai/deployments/emb%2F1/embeddings"
            "?api-version=2024-10-21",
        ),
    ],
)
def test_azure_urls_and_key(version: str | None, url: str) -> None:
    options = {"api_version": version} if version else {}
    t = target("azure", "emb/1", base_url="https://res.openai.azure.com", options=options)
    [built] = AZURE.build(request(input=[[1, 2]]), t)
    assert built.url == url
    assert built.headers["api-key"] == "key-1" and "authorization" not in built.headers
    assert AZURE.problem(request(input=[1]), t) is None


def test_openai_parse_keeps_usage_or_estimates_it() -> None:
    t = target("openai", "e", base_url="http://h/v1")
    data = [{"object": "embedding", "index": 0, "embedding": [0.5]}]
    usage = {"prompt_tokens": 7, "total_tokens": 7}
    kept = OPENAI.parse([reply({"object": "list", "data": data, "usage": usage})], request(), t)
    assert (kept.body["usage"], kept.usage_estimated) == (usage, False)
    estimated = OPENAI.parse([reply({"data": data})], request(), t)
    assert estimated.usage_estimated
    assert estimated.body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    for broken in ({"object": "list"}, {"data": data * 2}, {"data": [{"embedding": 3}]}):
        with pytest.raises(ProviderError) as caught:
            OPENAI.parse([reply(broken)], request(), t)
        assert caught.value.status == 502


# ---- Gemini --------------------------------------------------------------------------------

VERTEX = {"vertex": {"project": "proj-1", "location": "us-central1"}}


def test_gemini_studio_golden_and_batches_of_100() -> None:
    t = target("gemini", "text-embedding-004", api_keys=("AIza-k",))
    built = GEMINI.build(request(input=["a", "b"], dimensions=8), t)
    assert [r.url for r in built] == [
        "https://generativelanguage.googleapis.com/v1beta/models/"
        "text-embedding-004:batchEmbedContents"
    ]
    assert built[0].headers["x-goog-api-key"] == "AIza-k"
    assert bodies(built) == [
        {
            "requests": [
                {
                    "model": "models/text-embedding-004",
                    "content": {"parts": [{"text": text}]},
                    "outputDimensionality": 8,
                }
                for text in ("a", "b")
            ]
        }
    ]
    many = GEMINI.build(request(input=[f"t{i}" for i in range(250)]), t)
    assert [len(b["requests"]) for b in bodies(many)] == [100, 100, 50]
    parsed = GEMINI.parse(
        [reply({"embeddings": [{"values": [0.25, 0.5]}] * 2})], request(input=["a", "b"]), t
    )
    assert parsed.usage_estimated
    assert [d["embedding"] for d in parsed.body["data"]] == [[0.25, 0.5]] * 2


def test_gemini_vertex_predict_golden() -> None:
    t = target("gemini", "text-embedding-005", api_keys=("ya29.t",), options=VERTEX)
    built = GEMINI.build(request(input=["a", "b"], dimensions=16), t)
    assert [r.url for r in built] == [
        "https://us-central1-aiplatform.googleapis.com/v1/projects/proj-1/locations/"
        "us-central1/publishers/google/models/text-embedding-005:predict"
    ]
    assert built[0].headers["authorization"] == "Bearer ya29.t"
    assert bodies(built) == [
        {
            "instances": [{"content": "a"}, {"content": "b"}],
            "parameters": {"outputDimensionality": 16},
        }
    ]
    big = GEMINI.build(request(input=[f"t{i}" for i in range(300)]), t)
    assert [len(b["instances"]) for b in bodies(big)] == [250, 50]
    single = target("gemini", "gemini-embedding-001", options=VERTEX)
    assert [b["instances"] for b in bodies(GEMINI.build(request(input=["a", "b"]), single))] == [
        [{"content": "a"}],
        [{"content": "b"}],
    ]


def test_gemini_vertex_usage_from_statistics() -> None:
    t = target("gemini", "text-embedding-005", options=VERTEX)

    def prediction(tokens: int | None) -> dict[str, Any]:
        statistics = {"token_count": tokens, "truncated": False} if tokens is not None else {}
        return {"embeddings": {"values": [1.0], "statistics": statistics}}

    two = request(input=["a", "b"])
    parsed = GEMINI.parse([reply({"predictions": [prediction(4), prediction(5)]})], two, t)
    assert (parsed.body["usage"]["prompt_tokens"], parsed.usage_estimated) == (9, False)
    missing = GEMINI.parse([reply({"predictions": [prediction(4), prediction(None)]})], two, t)
    assert missing.usage_estimated


def test_gemini_refuses_chat_models_token_ids_and_bad_ids() -> None:
    assert GEMINI.problem(request(), target("gemini", "gemini-2.5-flash"))[0] == "model"
    assert GEMINI.problem(request(input=[1]), target("gemini", "text-embedding-004"))[0] == "input"
    with pytest.raises(ProviderError) as caught:
        GEMINI.build(request(), target("gemini", "../embedding"))
    assert caught.value.param == "model"


# ---- Bedrock -------------------------------------------------------------------------------

BASE = "https://bedrock-runtime.us-east-1.amazonaws.com"


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("amazon.titan-embed-text-v2:0", ("titan", 2)),
        ("amazon.titan-embed-text-v1", ("titan", 1)),
        ("us.cohere.embed-v4:0", ("cohere", 4)),
        ("cohere.embed-multilingual-v3", ("cohere", 3)),
        ("arn:aws:bedrock:us-east-1:1:inference-profile/eu.cohere.embed-v4:0", ("cohere", 4)),
        ("anthropic.claude-3-haiku-20240307-v1:0", None),
        ("amazon.titan-embed-image-v1", None),
    ],
)
def test_bedrock_families(model: str, expected: tuple[str, int] | None) -> None:
    assert family(model) == expected


def test_titan_one_call_per_text_golden() -> None:
    t = target(
        "bedrock", "amazon.titan-embed-text-v2:0", api_keys=(), options={"region": "us-east-1"}
    )
    built = BEDROCK.build(request(input=["a", "b"], dimensions=256), t)
    assert [r.url for r in built] == [f"{BASE}/model/amazon.titan-embed-text-v2:0/invoke"] * 2
    assert "authorization" not in built[0].headers  # SigV4 is the sender's step
    assert bodies(built) == [
        {"inputText": "a", "normalize": True, "dimensions": 256},
        {"inputText": "b", "normalize": True, "dimensions": 256},
    ]
    v1 = target("bedrock", "amazon.titan-embed-text-v1", options={"region": "us-east-1"})
    assert bodies(BEDROCK.build(request(), v1)) == [{"inputText": "hello world"}]
    assert BEDROCK.problem(request(dimensions=256), v1)[0] == "dimensions"
    parsed = BEDROCK.parse(
        [reply({"embedding": [0.5], "inputTextTokenCount": n}) for n in (2, 3)],
        request(input=["a", "b"]),
        t,
    )
    assert (parsed.body["usage"]["total_tokens"], parsed.usage_estimated) == (5, False)


def test_cohere_batches_input_type_and_usage_header() -> None:
    arn = "arn:aws:bedrock:us-east-1:1:inference-profile/us.cohere.embed-v4:0"
    t = target("bedrock", arn, options={"region": "us-east-1"})
    built = BEDROCK.build(request(input=[f"t{i}" for i in range(200)], dimensions=512), t)
    assert built[0].url == (
        f"{BASE}/model/arn:aws:bedrock:us-east-1:1:inference-profile%2Fus.cohere.embed-v4:0/invoke"
    )
    sent = bodies(built)
    assert [len(b["texts"]) for b in sent] == [96, 96, 8]
    assert sent[0]["input_type"] == "search_document" and sent[0]["output_dimension"] == 512
    query = bodies(BEDROCK.build(request(input_type="search_query"), t))
    assert query == [{"texts": ["hello world"], "input_type": "search_query"}]
    v3 = target("bedrock", "cohere.embed-english-v3", options={"region": "us-east-1"})
    assert BEDROCK.problem(request(dimensions=512), v3)[0] == "dimensions"
    assert BEDROCK.problem(request(input_type="poem"), v3)[0] == "input_type"
    two = request(input=["a", "b"])
    by_type = reply(
        {"embeddings": {"float": [[0.5], [0.25]]}}, **{"x-amzn-bedrock-input-token-count": "6"}
    )
    parsed = BEDROCK.parse([by_type], two, t)
    assert (parsed.body["usage"]["prompt_tokens"], parsed.usage_estimated) == (6, False)
    assert BEDROCK.parse([reply({"embeddings": [[0.5], [0.25]]})], two, v3).usage_estimated


def test_bedrock_api_key_is_a_bearer_token() -> None:
    t = target(
        "bedrock",
        "amazon.titan-embed-text-v2:0",
        api_keys=("brk",),
        options={"region": "us-east-1"},
    )
    assert BEDROCK.build(request(), t)[0].headers["authorization"] == "Bearer brk"


# ---- mock and encoding ---------------------------------------------------------------------


def test_mock_is_deterministic_unit_length_and_honours_dimensions() -> None:
    t = target("mock", "mock-embed")
    first = MOCK.embed(request(input=["a", "b"]), t).body
    again = MOCK.embed(request(input=["a", "b"]), t).body
    assert first == again
    a, b = (d["embedding"] for d in first["data"])
    assert len(a) == 256 and a != b
    assert math.isclose(math.sqrt(sum(x * x for x in a)), 1.0, rel_tol=1e-5)
    assert abs(sum(x * y for x, y in zip(a, b, strict=True))) < 0.3  # nearly orthogonal
    assert len(MOCK.embed(request(dimensions=12), t).body["data"][0]["embedding"]) == 12
    assert first["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    ids = MOCK.embed(request(input=[[5, 6, 7]]), t).body
    assert ids["usage"]["prompt_tokens"] == 3
    assert MOCK.problem(request(dimensions=5000), t)[0] == "dimensions"


def test_base64_is_little_endian_float32_as_the_sdk_decodes_it() -> None:
    vector = pseudo_embedding(b"seed", 16)
    encoded = float32_base64(vector)
    assert array.array("f", base64.b64decode(encoded)).tolist() == vector  # float32-exact
    assert base64.b64decode(float32_base64([1.0, -2.0])) == bytes.fromhex("0000803f000000c0")
    body = {"data": [{"embedding": [1.0]}, {"embedding": "AACAPw=="}]}
    assert encode(body, "base64")["data"] == [{"embedding": "AACAPw=="}] * 2
    assert encode({"data": [{"embedding": [1.0]}]}, "float")["data"][0]["embedding"] == [1.0]


def test_provider_errors_use_the_adapters_mapping() -> None:
    error = BEDROCK.parse_error(
        429, {"x-amzn-errortype": "ThrottlingException"}, b'{"message":"slow down"}'
    )
    assert error.failure_class is FailureClass.RATE_LIMIT
    gemini = GEMINI.parse_error(
        429, {}, orjson.dumps({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}})
    )
    assert (gemini.status, gemini.failure_class) == (429, FailureClass.RATE_LIMIT)
