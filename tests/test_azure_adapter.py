"""Golden tests for the Azure adapter: URLs, auth headers, config checks, error mapping and
the stream normalisation (prompt-filter chunk, asynchronous-filter annotations)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from core.providers.adapters.azure import ADAPTER, AzureStreamParser
from core.providers.adapters.base import ProviderError, Target
from core.wire.sse import SSEDecoder
from shared.config import ProviderConfig
from shared.configparse import ConfigError
from shared.errors import FailureClass
from tests.support.providers import provider_of

BASE = "https://res.openai.azure.com"
MESSAGES = [{"role": "user", "content": "hi"}]


def provider(
    options: dict[str, Any] | None = None,
    base_url: str | None = BASE,
    keys: tuple[str, ...] = ("azure-key",),
    headers: dict[str, str] | None = None,
) -> ProviderConfig:
    return ProviderConfig(
        name="az",
        kind="azure",
        base_url=base_url,
        api_keys=keys,
        headers=headers or {},
        timeout_s=None,
        allow_any_model=True,
        options=options or {},
    )


def target(model: str = "gpt-4o-deploy", **options: Any) -> Target:
    """Built as start-up builds it: check_provider has accepted its config."""
    config = provider(options)
    return Target(provider_of(config), model, config.api_keys[0])


def body_of(raw: bytes) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(raw)
    return body


@pytest.mark.parametrize(
    ("options", "url"),
    [
        ({}, f"{BASE}/openai/v1/chat/completions"),
        ({"api_version": "v1"}, f"{BASE}/openai/v1/chat/completions"),
        ({"api_version": "preview"}, f"{BASE}/openai/v1/chat/completions?api-version=preview"),
        (
            {"api_version": "2024-10-21"},
            f"{BASE}/openai/deployments/gpt-4o-deploy/chat/completions?api-version=2024-10-21",
        ),
        (
            {"api_version": "2025-04-01-preview"},
            f"{BASE}/openai/deployments/gpt-4o-deploy/chat/completions"
            "?api-version=2025-04-01-preview",
        ),
    ],
)
def test_urls(options: dict[str, Any], url: str) -> None:
    t = target(**options)
    request = ADAPTER.build_request({"model": "alias", "messages": MESSAGES}, t)
    assert request.url == url
    assert body_of(request.body)["model"] == "gpt-4o-deploy"  # the deployment, on both paths


def test_tenant_supplied_deployment_cannot_escape_the_path() -> None:
    t = target("../../x?api-version=evil", api_version="2024-10-21")
    url = ADAPTER.build_request({"model": "m", "messages": MESSAGES}, t).url
    assert url == (
        f"{BASE}/openai/deployments/..%2F..%2Fx%3Fapi-version%3Devil/chat/completions"
        "?api-version=2024-10-21"
    )


def test_api_key_header_by_default_bearer_for_entra() -> None:
    headers = ADAPTER.build_request({"model": "m", "messages": MESSAGES}, target()).headers
    assert headers["api-key"] == "azure-key" and "authorization" not in headers
    bearer = ADAPTER.build_request(
        {"model": "m", "messages": MESSAGES}, target(auth="bearer")
    ).headers
    assert bearer["authorization"] == "Bearer azure-key" and "api-key" not in bearer


def test_resource_named_like_the_path_is_accepted() -> None:
    ADAPTER.check_provider(provider(base_url="https://openai-prod.openai.azure.com"))


def test_provider_headers_are_sent() -> None:
    config = provider(headers={"x-ms-client-request-id": "abc"})
    request = ADAPTER.build_request(
        {"model": "m", "messages": MESSAGES}, Target(provider_of(config), "d", "azure-key")
    )
    assert request.headers["x-ms-client-request-id"] == "abc"


@pytest.mark.parametrize(
    ("version", "asks"),
    [("v1", True), ("preview", True), ("2024-10-21", True), ("2024-06-01", False)],
)
def test_stream_options_only_where_the_api_version_knows_them(version: str, asks: bool) -> None:
    canonical = {"model": "m", "messages": MESSAGES, "stream": True}
    body = body_of(ADAPTER.build_request(canonical, target(api_version=version)).body)
    assert body.get("stream_options") == ({"include_usage": True} if asks else None)


def test_params_pass_through_unrenamed() -> None:
    canonical = {"model": "m", "messages": MESSAGES, "seed": 3, "max_completion_tokens": 9}
    body = body_of(ADAPTER.build_request(canonical, target()).body)
    assert body["seed"] == 3 and body["max_completion_tokens"] == 9
    assert ADAPTER.capabilities(target()).params is None


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (provider(base_url=None), r"^providers\.az\.base_url: required"),
        (provider(base_url=f"{BASE}/openai/v1"), r"^providers\.az\.base_url: give the resource"),
        (provider({"api_version": "2024-13"}), r"^providers\.az\.options\.api_version: expected"),
        (provider({"api_version": 20241021}), r"^providers\.az\.options\.api_version: expected"),
        (provider({"auth": "oauth"}), r"^providers\.az\.options\.auth: expected api-key or"),
        (
            provider({"prompt_cache_key": "no"}),
            r"^providers\.az\.options\.prompt_cache_key: expected true or false",
        ),
        (provider({"deployment": "x"}), r"^providers\.az\.options\.deployment: unknown option"),
        (provider(keys=()), r"^providers\.az\.api_key: required"),
    ],
)
def test_config_errors_name_the_key(config: ProviderConfig, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ADAPTER.check_provider(config)


def _error(status: int, error: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    return ADAPTER.parse_error(status, headers or {}, orjson.dumps({"error": error}))


def test_prompt_filter_error_is_content_filter_400() -> None:
    error = _error(
        400,
        {
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's "
            "content management policy.",
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {}},
        },
    )
    assert error.failure_class is FailureClass.CONTENT_FILTER
    assert (error.status, error.code, error.param) == (400, "content_filter", "prompt")
    inner_only = _error(
        400,
        {
            "message": "filtered",
            "code": "400",
            "innererror": {"code": "ResponsibleAIPolicyViolation"},
        },
    )
    assert inner_only.failure_class is FailureClass.CONTENT_FILTER
    assert inner_only.code == "content_filter"


def test_429_prefers_retry_after_ms_and_hides_operator_details() -> None:
    error = _error(
        429,
        {"code": "429", "message": "... S0 pricing tier ... https://aka.ms/oai/quotaincrease"},
        {"retry-after": "2", "retry-after-ms": "1500"},
    )
    assert error.failure_class is FailureClass.RATE_LIMIT
    assert error.status == 429 and error.retry_after_s == 1.5
    assert error.code == "rate_limit_exceeded"
    assert "aka.ms" not in error.message and "S0" not in error.message
    assert "1.5" in error.message


def test_quota_403_is_quota_not_auth() -> None:
    error = _error(403, {"code": "403", "message": "Out of call volume quota for OpenAI API."})
    assert error.failure_class is FailureClass.QUOTA_EXHAUSTED and error.status == 429


def test_auth_failure_never_relays_the_message() -> None:
    error = _error(401, {"code": "401", "message": "Access denied. Key received: azure-key."})
    assert error.failure_class is FailureClass.AUTH and error.status == 502
    assert "azure-key" not in error.message


def test_missing_deployment_is_the_operators_problem() -> None:
    error = _error(404, {"code": "DeploymentNotFound", "message": "does not exist"})
    assert error.status == 502 and error.failure_class is FailureClass.TRANSIENT


def test_non_json_error_body() -> None:
    error = ADAPTER.parse_error(503, {}, b"<html>Service Unavailable</html>")
    assert error.failure_class is FailureClass.TRANSIENT and error.status == 503


# Our own Azure-shaped stream (the shape of a recorded Azure transcript, written by hand):
# prompt-filter chunk first, content with per-choice filter results, an asynchronous-filter
# annotation mid-way, finish, usage.
_SAFE = {"hate": {"filtered": False, "severity": "safe"}}
_HEAD = {"id": "chatcmpl-A1", "object": "chat.completion.chunk", "created": 7, "model": "gpt-4o"}
_PROMPT_FILTER = [{"prompt_index": 0, "content_filter_results": _SAFE}]


def _delta(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"content_filter_results": _SAFE, "delta": delta, "finish_reason": finish, "index": 0}
    return {**_HEAD, "choices": [choice]}


def _annotation(finish: str | None) -> dict[str, Any]:
    choice = {
        "index": 0,
        "finish_reason": finish,
        "content_filter_results": _SAFE,
        "content_filter_offsets": {"check_offset": 1, "start_offset": 1, "end_offset": 9},
    }
    return {"id": "", "object": "", "created": 0, "model": "", "choices": [choice], "usage": None}


def _sse(events: list[Any]) -> bytes:
    parts = [b"data: " + orjson.dumps(e) + b"\n\n" for e in events]
    return b"".join(parts) + b"data: [DONE]\n\n"


def _parse(raw: bytes, step: int) -> list[dict[str, Any]]:
    decoder, parser = SSEDecoder(), AzureStreamParser()
    out: list[dict[str, Any]] = []
    for i in range(0, len(raw), step):
        for event in decoder.feed(raw[i : i + step]):
            out.extend(parser.feed(event))
    for event in decoder.finish():
        out.extend(parser.feed(event))
    out.extend(parser.finish())
    return out


@pytest.mark.parametrize("step", [1, 7, 4096])
def test_prompt_filter_chunk_is_folded_into_the_first_real_chunk(step: int) -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    raw = _sse(
        [
            {
                "choices": [],
                "created": 0,
                "id": "",
                "model": "",
                "object": "",
                "prompt_filter_results": _PROMPT_FILTER,
            },
            _delta({"content": "", "refusal": None, "role": "assistant"}),
            _delta({"content": "Pa"}),
            _annotation(None),
            _delta({"content": "ris"}),
            _delta({}, "stop"),
            {**_HEAD, "choices": [], "usage": usage},
        ]
    )
    chunks = _parse(raw, step)
    assert chunks[0]["prompt_filter_results"] == _PROMPT_FILTER
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert sum("prompt_filter_results" in c for c in chunks) == 1
    assert all(c["choices"] for c in chunks[:-1]) and chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == usage
    assert {c["id"] for c in chunks} == {"chatcmpl-A1"}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1])
    assert text == "Paris"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_async_filter_block_passes_through_as_content_filter() -> None:
    raw = _sse(
        [
            {"choices": [], "id": "", "model": "", "prompt_filter_results": _PROMPT_FILTER},
            _delta({"role": "assistant", "content": ""}),
            _delta({"content": "Hey Jude"}),
            _annotation(None),
            _annotation("content_filter"),
        ]
    )
    chunks = _parse(raw, 4096)
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == "content_filter"
    assert last["choices"][0]["delta"] == {}
    assert (last["id"], last["model"], last["object"]) == (
        "chatcmpl-A1",
        "gpt-4o",
        "chat.completion.chunk",
    )
    assert len(chunks) == 3  # role, text, the blocking finish; the plain annotation dropped


def test_stream_without_done_is_an_error() -> None:
    parser = AzureStreamParser()
    with pytest.raises(ProviderError, match="ended before completion"):
        parser.finish()


def test_prompt_cache_marks_are_removed_and_the_key_goes_only_to_the_v1_api() -> None:
    canonical: dict[str, Any] = {
        "model": "gpt-4o",
        "prompt_cache_key": "ilk-abc",
        "messages": [
            {"role": "system", "content": "s", "cache_control": {"type": "ephemeral"}},
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}],
            },
        ],
    }
    v1 = body_of(ADAPTER.build_request(canonical, target(api_version="v1")).body)
    assert v1["prompt_cache_key"] == "ilk-abc" and "cache_control" not in str(v1)
    dated = body_of(ADAPTER.build_request(canonical, target(api_version="2024-10-21")).body)
    assert "prompt_cache_key" not in dated and "cache_control" not in str(dated)
    # A v1 deployment of a model that refuses it (DeepSeek, Kimi on Foundry): withheld.
    off = target(api_version="v1", prompt_cache_key=False)
    assert "prompt_cache_key" not in body_of(ADAPTER.build_request(canonical, off).body)
