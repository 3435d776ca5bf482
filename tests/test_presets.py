"""Golden tests for the OpenAI-compatible presets: param mapping, capabilities, config checks,
and the stream normalisation every compatible host goes through."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from core.providers.adapters.base import ProviderError, StreamEvent, Target
from core.providers.adapters.openai_compat import ADAPTER, OpenAIStreamParser
from core.providers.adapters.presets import GENERIC, PRESETS, resolve
from core.routing.planning import plan_chat as plan
from core.routing.registry import Candidate, Route
from shared.config import ProviderConfig
from shared.configparse import ConfigError
from shared.errors import FailureClass, GatewayError
from tests.support.providers import provider_of


def provider(
    options: dict[str, Any] | None = None,
    base_url: str | None = None,
    keys: tuple[str, ...] = ("sk-test",),
    headers: dict[str, str] | None = None,
    name: str = "p",
) -> ProviderConfig:
    return ProviderConfig(
        name=name,
        kind="openai",
        base_url=base_url,
        api_keys=keys,
        headers=headers or {},
        timeout_s=None,
        allow_any_model=False,
        options=options or {},
    )


def target(preset: str | None = None, model: str = "m", **kwargs: Any) -> Target:
    """Built as start-up builds it: check_provider has accepted its config."""
    config = provider({"preset": preset} if preset else None, **kwargs)
    return Target(provider_of(config), model, config.api_keys[0] if config.api_keys else None)


def sent(request_body: bytes) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(request_body)
    return body


MESSAGES = [{"role": "user", "content": "hi"}]

DEFAULT_URLS = {
    "openai": "https://api.openai.com/v1/chat/completions",
    "deepseek": "https://api.deepseek.com/chat/completions",
    "mistral": "https://api.mistral.ai/v1/chat/completions",
    "groq": "https://api.groq.com/openai/v1/chat/completions",
    "together": "https://api.together.xyz/v1/chat/completions",
    "openrouter": "https://openrouter.ai/api/v1/chat/completions",
    "xai": "https://api.x.ai/v1/chat/completions",
    "fireworks": "https://api.fireworks.ai/inference/v1/chat/completions",
    "ollama": "http://localhost:11434/v1/chat/completions",
    "vllm": "http://localhost:8000/v1/chat/completions",
}


def test_the_preset_list_is_the_documented_one() -> None:
    assert set(PRESETS) == set(DEFAULT_URLS)


@pytest.mark.parametrize("name", sorted(DEFAULT_URLS))
def test_default_base_url_and_bearer_auth(name: str) -> None:
    t = target(name)
    request = ADAPTER.build_request({"model": "alias", "messages": MESSAGES}, t)
    assert request.url == DEFAULT_URLS[name]
    assert request.headers["authorization"] == "Bearer sk-test"
    assert sent(request.body)["model"] == "m"


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://api.groq.com/openai/v1", "groq"),
        ("https://api.mistral.ai/v1", "mistral"),
        ("https://API.DeepSeek.com", "deepseek"),
        ("https://api.together.ai/v1", "together"),
        ("https://openrouter.ai/api/v1", "openrouter"),
        ("https://api.x.ai/v1", "xai"),
        ("https://api.fireworks.ai/inference/v1", "fireworks"),
        ("https://api.openai.com/v1", "openai"),
        (None, "openai"),
    ],
)
def test_preset_inferred_from_host(base_url: str | None, expected: str) -> None:
    assert resolve(None, base_url) is PRESETS[expected]


def test_unknown_host_is_generic_and_sends_everything() -> None:
    # Built as at start-up (check_provider): no key needed for an unknown (e.g. local) host.
    t = target(base_url="http://127.0.0.1:9999/v1", keys=())
    assert resolve(None, "http://127.0.0.1:9999/v1") is GENERIC
    assert ADAPTER.capabilities(t).params is None
    body = {"model": "x", "messages": MESSAGES, "seed": 1, "user": "u", "logprobs": True}
    request = ADAPTER.build_request(body, t)
    assert sent(request.body) == {**body, "model": "m"}
    assert "authorization" not in request.headers


def test_explicit_preset_wins_over_host() -> None:
    t = target("mistral", base_url="https://my-proxy.example/v1")
    request = ADAPTER.build_request({"model": "x", "messages": MESSAGES, "seed": 7}, t)
    assert request.url == "https://my-proxy.example/v1/chat/completions"
    assert sent(request.body)["random_seed"] == 7


def test_unknown_preset_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^providers\.groqq\.options\.preset: unknown preset"):
        ADAPTER.check_provider(provider({"preset": "grok-typo"}, name="groqq"))


def test_unknown_option_and_bad_type_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"^providers\.p\.options\.presett: unknown option"):
        ADAPTER.check_provider(provider({"presett": "groq"}))
    with pytest.raises(ConfigError, match=r"^providers\.p\.options\.preset: expected a string"):
        ADAPTER.check_provider(provider({"preset": 3}))


def test_hosted_presets_need_a_key_local_ones_do_not() -> None:
    with pytest.raises(ConfigError, match=r"^providers\.p\.api_key: required for preset 'groq'"):
        ADAPTER.check_provider(provider({"preset": "groq"}, keys=()))
    for local in ("ollama", "vllm"):
        t = target(local, keys=())
        request = ADAPTER.build_request({"model": "x", "messages": MESSAGES}, t)
        assert "authorization" not in request.headers


def test_mistral_param_mapping_golden() -> None:
    canonical: dict[str, Any] = {
        "model": "mistral-small",
        "messages": [
            {"role": "system", "content": "be brief", "name": "ops"},
            {"role": "user", "content": "hi", "name": "alice"},
            {
                "role": "assistant",
                "content": "hello",
                "refusal": None,
                "reasoning_content": "thinking...",
            },
            {"role": "tool", "tool_call_id": "c1", "name": "lookup", "content": "42"},
        ],
        "seed": 42,
        "max_completion_tokens": 64,
        "temperature": 0.2,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    request = ADAPTER.build_request(canonical, target("mistral", model="mistral-small-latest"))
    assert sent(request.body) == {
        "model": "mistral-small-latest",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "tool", "tool_call_id": "c1", "name": "lookup", "content": "42"},
        ],
        "random_seed": 42,
        "max_tokens": 64,
        "temperature": 0.2,
        "stream": True,
    }
    assert request.headers["accept"] == "text/event-stream"
    assert canonical["seed"] == 42 and "name" in canonical["messages"][1]  # input untouched


@pytest.mark.parametrize("name", ["deepseek", "together", "fireworks", "ollama"])
def test_max_completion_tokens_becomes_max_tokens(name: str) -> None:
    body = sent(
        ADAPTER.build_request(
            {"model": "x", "messages": MESSAGES, "max_completion_tokens": 10}, target(name)
        ).body
    )
    assert body["max_tokens"] == 10 and "max_completion_tokens" not in body


@pytest.mark.parametrize(
    ("name", "asks"),
    [
        ("openai", True),
        ("groq", True),
        ("deepseek", True),
        ("ollama", True),
        ("fireworks", True),
        ("mistral", False),
        ("together", False),
        ("openrouter", False),
    ],
)
def test_stream_usage_is_asked_for_only_where_the_host_accepts_it(name: str, asks: bool) -> None:
    body = sent(
        ADAPTER.build_request(
            {"model": "x", "messages": MESSAGES, "stream": True}, target(name)
        ).body
    )
    assert ("stream_options" in body) is asks
    if asks:
        assert body["stream_options"] == {"include_usage": True}


def test_capability_declarations() -> None:
    caps = {name: ADAPTER.capabilities(target(name)) for name in PRESETS}
    for name in ("openai", "openrouter", "vllm"):
        assert caps[name].params is None
    groq = caps["groq"].params
    assert groq is not None
    assert {"logprobs", "top_logprobs", "logit_bias"}.isdisjoint(groq)
    assert {"n", "seed", "user", "tools", "response_format", "reasoning_format"} <= groq
    mistral = caps["mistral"].params
    assert mistral is not None
    assert {"user", "logprobs", "logit_bias", "stream_options"}.isdisjoint(mistral)
    assert {"seed", "random_seed", "safe_prompt", "n", "max_completion_tokens"} <= mistral
    deepseek = caps["deepseek"]
    assert deepseek.vision is False and deepseek.json_schema is False
    assert deepseek.json_object is True and deepseek.tools is True
    assert deepseek.params is not None and {"n", "seed", "user"}.isdisjoint(deepseek.params)
    ollama = caps["ollama"]
    assert ollama.image_urls is False and ollama.vision is True
    assert ollama.params is not None
    assert {"tool_choice", "user", "n", "logit_bias", "logprobs"}.isdisjoint(ollama.params)
    together = caps["together"].params
    assert together is not None and "logprobs" not in together and "top_k" in together


def test_groq_rejects_n_above_one_but_not_n_one() -> None:
    t = target("groq")
    ADAPTER.build_request({"model": "x", "messages": MESSAGES, "n": 1}, t)
    with pytest.raises(ProviderError) as info:
        ADAPTER.build_request({"model": "x", "messages": MESSAGES, "n": 2}, t)
    assert info.value.status == 400 and info.value.param == "n"
    assert info.value.failure_class is FailureClass.CLIENT_ERROR


def test_groq_drops_message_names() -> None:
    messages = [{"role": "user", "content": "hi", "name": "alice"}]
    body = sent(ADAPTER.build_request({"model": "x", "messages": messages}, target("groq")).body)
    assert body["messages"] == [{"role": "user", "content": "hi"}]


class _NoUpstream:
    """plan() never calls the upstream; it only reads the candidate's capabilities."""


def _route(name: str, strict: bool) -> Route:
    t = target(name)
    candidate = Candidate(t, _NoUpstream(), ADAPTER.capabilities(t))  # type: ignore[arg-type]
    return Route("m", (candidate,), strict, False)


def test_core_rejects_or_drops_what_the_preset_does_not_honour() -> None:
    payload = {"model": "m", "messages": MESSAGES, "logprobs": True, "temperature": 0.1}
    with pytest.raises(GatewayError) as info:
        plan(_route("groq", strict=True), payload)
    assert info.value.status == 400 and info.value.param == "logprobs"
    [attempt] = plan(_route("groq", strict=False), payload)
    assert attempt.dropped == ("logprobs",)
    assert "logprobs" not in attempt.payload and attempt.payload["temperature"] == 0.1


def test_core_refuses_images_for_deepseek() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    payload = {"model": "m", "messages": [{"role": "user", "content": [image]}]}
    with pytest.raises(GatewayError) as info:
        plan(_route("deepseek", strict=False), payload)
    assert info.value.param == "messages"


def test_openrouter_attribution_headers_come_from_provider_headers() -> None:
    headers = {"HTTP-Referer": "https://app.example", "X-Title": "Example App"}
    t = target("openrouter", headers=headers)
    request = ADAPTER.build_request({"model": "x", "messages": MESSAGES}, t)
    assert request.headers["HTTP-Referer"] == "https://app.example"
    assert request.headers["X-Title"] == "Example App"
    assert request.headers["authorization"] == "Bearer sk-test"


def _feed(parser: OpenAIStreamParser, *events: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for event in events:
        out.extend(parser.feed(StreamEvent(None, orjson.dumps(event))))
    out.extend(parser.feed(StreamEvent(None, b"[DONE]")))
    out.extend(parser.finish())
    return out


def test_usage_on_the_finish_chunk_is_split_into_its_own_chunk() -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    head = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "mistral"}
    chunks = _feed(
        OpenAIStreamParser(),
        {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}]},
        {
            **head,
            "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "stop"}],
            "usage": usage,
        },
    )
    assert [c["choices"] for c in chunks][-1] == []
    assert chunks[-1]["usage"] == usage and chunks[-1]["id"] == "c1"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and "usage" not in chunks[-2]
    assert [c for c in chunks if c.get("usage")] == [chunks[-1]]


def test_empty_choices_without_usage_never_reach_encoders() -> None:
    chunks = _feed(
        OpenAIStreamParser(),
        {"id": "", "choices": [], "model": "", "object": "", "created": 0},
        {
            "id": "c1",
            "model": "m",
            "created": 1,
            "choices": [{"index": 0, "delta": {"content": "x"}}],
        },
        {"id": "c1", "model": "m", "created": 1, "choices": [], "usage": None},
    )
    assert [c["choices"][0]["delta"] for c in chunks] == [{"content": "x"}]


def test_flat_validation_error_body_is_summarised() -> None:
    body = {
        "object": "error",
        "message": {
            "detail": [
                {
                    "type": "extra_forbidden",
                    "loc": ["body", "stream_options"],
                    "msg": "Extra inputs are not permitted",
                }
            ]
        },
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    error = ADAPTER.parse_error(422, {}, orjson.dumps(body))
    assert error.status == 422 and error.failure_class is FailureClass.CLIENT_ERROR
    assert error.message == "body.stream_options: Extra inputs are not permitted"


def test_running_usage_totals_yield_one_usage_chunk_at_done() -> None:
    head = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}

    def usage(n: int) -> dict[str, int]:
        return {"prompt_tokens": 4, "completion_tokens": n, "total_tokens": 4 + n}

    chunks = _feed(
        OpenAIStreamParser(),
        {**head, "choices": [{"index": 0, "delta": {"content": "a"}}], "usage": usage(1)},
        {**head, "choices": [{"index": 0, "delta": {"content": "b"}}], "usage": usage(2)},
        {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    )
    assert [c.get("usage") for c in chunks] == [None, None, None, usage(2)]
    assert chunks[-1]["choices"] == [] and chunks[-1]["id"] == "c1"
