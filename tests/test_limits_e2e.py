"""Tenant rate limits and image inlining through the real edge and core, with a real Redis."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest

from tests.support.fake_openai import PNG, FakeOpenAI
from tests.support.stack import Stack

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def limited(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, fake_openai: FakeOpenAI
) -> Iterator[Stack]:
    overrides = {
        "state": {"redis_url": redis_url, "on_redis_down": "fail_open"},
        # "paid" is configured without limits: an explicit choice, unlike an unknown tier.
        # burst 1 (a whole minute at once): these tests spend a tier's limit back to back.
        "limits": {
            "tiers": {
                "free": {"rpm": 2, "burst": 1},
                "metered": {"tpm": 5000, "burst": 1},
                "paid": {},
            }
        },
        "core": {"image_allow_private_networks": True},
        "providers": {
            "mock": {"kind": "mock", "allow_any_model": True},
            "local": {
                "kind": "openai",
                "base_url": fake_openai.base_url,
                "options": {"preset": "ollama"},
            },
        },
        "models": {
            "mock-1": {"provider": "mock"},
            "llava": {"provider": "local", "model": "llava"},
        },
    }
    stack = Stack(Path(tmp_path_factory.mktemp("limited")), overrides).start()
    yield stack
    stack.stop()


def openai_client(stack: Stack, tenant: str, tier: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{stack.edge_url}/v1",
        api_key=stack.token(tenant=tenant, tier=tier),
        max_retries=0,
    )


def test_rpm_limit_returns_openai_429_with_headers(limited: Stack) -> None:
    client = openai_client(limited, "tenant-rpm", "free")
    first = client.chat.completions.with_raw_response.create(model="mock-1", messages=MESSAGES)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    client.chat.completions.create(model="mock-1", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="mock-1", messages=MESSAGES)
    headers = info.value.response.headers
    assert int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert info.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
    # Another tenant on the same tier has its own budget.
    openai_client(limited, "tenant-other", "free").chat.completions.create(
        model="mock-1", messages=MESSAGES
    )


def test_unknown_tier_is_a_403_not_unlimited(limited: Stack) -> None:
    """Finding 8: a tier the gateway does not know used to mean "no limits at all"."""
    client = openai_client(limited, "tenant-gold", "gold")
    for _ in range(3):  # more than any configured tier's RPM would allow, had it applied
        with pytest.raises(openai.PermissionDeniedError) as info:
            client.chat.completions.create(model="mock-1", messages=MESSAGES)
        assert info.value.body["code"] == "unknown_tier"  # type: ignore[index]
    no_tier = openai.OpenAI(
        base_url=f"{limited.edge_url}/v1", api_key=limited.token(tenant="t-none"), max_retries=0
    )
    with pytest.raises(openai.PermissionDeniedError):  # implied "default" is not configured
        no_tier.chat.completions.create(model="mock-1", messages=MESSAGES)


def test_anthropic_api_gets_its_own_429_envelope(limited: Stack) -> None:
    client = anthropic.Anthropic(
        base_url=limited.edge_url,
        api_key=limited.token(tenant="tenant-ant", tier="free"),
        max_retries=0,
    )
    for _ in range(2):
        client.messages.create(
            model="mock-1", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(
            model="mock-1", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


def test_tpm_reservation_is_refunded_after_actual_usage(limited: Stack) -> None:
    client = openai_client(limited, "tenant-tpm", "metered")
    # Each request reserves ~prompt + 2000 tokens, more than half the 5000 TPM budget; actual
    # usage is tiny and is settled back, so many such requests fit in a minute.
    for _ in range(6):
        client.chat.completions.create(model="mock-1", messages=MESSAGES, max_tokens=2000)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="mock-1", messages=MESSAGES, max_tokens=6000)
    assert info.value.body["type"] == "tokens"  # type: ignore[index]


def test_remote_images_are_inlined_for_targets_that_need_bytes(
    limited: Stack, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reset()
    client = openai_client(limited, "tenant-img", "paid")
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": f"{fake_openai.url}/img.png"}},
    ]
    client.chat.completions.create(model="llava", messages=[{"role": "user", "content": content}])
    [sent] = fake_openai.received
    url = sent.json["messages"][0]["content"][1]["image_url"]["url"]
    assert url == "data:image/png;base64," + base64.b64encode(PNG).decode()


def test_unfetchable_image_is_a_400_naming_the_part(
    limited: Stack, fake_openai: FakeOpenAI
) -> None:
    client = openai_client(limited, "tenant-img", "paid")
    content = [{"type": "image_url", "image_url": {"url": f"{fake_openai.url}/missing.png"}}]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="llava", messages=[{"role": "user", "content": content}]
        )
    assert info.value.body["param"] == "messages[0].content[0].image_url.url"  # type: ignore[index]
