"""Fault injection through the real edge and core (issue 5): retries, failover, timeouts, key
rotation, circuit breakers, and what a client sees with and without a fallback."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import openai
import orjson
import pytest

from tests.support import raw
from tests.support.fake_openai import TEXT, FakeOpenAI
from tests.support.net import free_port
from tests.support.sdk import client
from tests.support.stack import Stack

MESSAGES = [{"role": "user", "content": "hi"}]


def _providers(fake: FakeOpenAI) -> dict[str, dict[str, object]]:
    def at_fake(**keys: object) -> dict[str, object]:
        return {"kind": "openai", "base_url": fake.base_url, "allow_any_model": True, **keys}

    return {
        "fake": at_fake(api_key="sk-test"),
        "pool": at_fake(api_keys=["sk-bad", "sk-good"]),
        "down": {
            "kind": "openai",
            "base_url": f"http://127.0.0.1:{free_port()}/v1",
            "api_key": "sk-x",
        },
        # Its own breaker: the timeout tests' failures stay out of the other tests' way.
        "slow": at_fake(api_key="sk-test"),
        "breaky": at_fake(api_key="sk-test"),
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI) -> Iterator[Stack]:
    def to(model: str) -> dict[str, str]:
        return {"provider": "fake", "model": model}

    overrides = {
        "core": {
            # The dispatcher's clocks must exceed the connect phase (a start-up check).
            "connect_timeout": "500ms",
            "resilience": {
                "first_byte_timeout": "1s",
                "completion_timeout": "2s",
                "stream_idle_timeout": "1s",
                "max_retries": 2,
                "backoff_base": "10ms",
                "backoff_cap": "50ms",
                "retry_after_cap": "2s",
                "breaker_min_requests": 3,
                "breaker_window": "30s",
                "breaker_open_for": "30s",
            },
        },
        "providers": _providers(fake),
        "models": {
            "stall-fallback": {"targets": [to("stall-headers"), to("gpt-fake")]},
            "503-fallback": {"targets": [to("fail-503"), to("gpt-fake")]},
            "529-fallback": {"targets": [to("fail-529"), to("gpt-fake")]},
            "refused-fallback": {"targets": [{"provider": "down", "model": "x"}, to("gpt-fake")]},
            "quota-fallback": {"targets": [to("quota"), to("gpt-fake")]},
            "client-error": {"targets": [to("bad-param"), to("gpt-fake")]},
            "tripping": {"targets": [{"provider": "breaky", "model": "fail-503"}]},
            "context-fallback": {"targets": [to("context"), to("gpt-fake")]},
            "tiered": {
                "targets": [to("gpt-fake")],
                "tiers": {"free": [{"provider": "mock", "model": "mock-cheap"}]},
            },
        },
    }
    running = Stack(Path(tmp_path_factory.mktemp("resilience")), overrides).start()
    yield running
    running.stop()


def create(stack: Stack, model: str, **kwargs: object):  # type: ignore[no-untyped-def]
    return client(stack).chat.completions.with_raw_response.create(
        model=model, messages=MESSAGES, **kwargs
    )


def test_429_with_retry_after_is_retried_on_the_only_target(stack: Stack, fake: FakeOpenAI) -> None:
    model = f"fake/once-429/{uuid.uuid4().hex}"
    response = create(stack, model)
    assert response.parse().choices[0].message.content == TEXT
    assert response.headers["x-interlock-retries"] == "1"
    assert fake.calls[model.removeprefix("fake/")] == 2


def test_transient_500_is_retried(stack: Stack, fake: FakeOpenAI) -> None:
    model = f"fake/once-500/{uuid.uuid4().hex}"
    response = create(stack, model, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices) == TEXT
    assert response.headers["x-interlock-attempts"] == "2"


@pytest.mark.parametrize(
    "model", ["503-fallback", "529-fallback", "refused-fallback", "quota-fallback"]
)
@pytest.mark.parametrize("stream", [False, True])
def test_fallback_hides_the_failure(stack: Stack, model: str, stream: bool) -> None:
    response = create(stack, model, stream=stream)
    parsed = response.parse()
    text = (
        "".join(c.choices[0].delta.content or "" for c in parsed if c.choices)
        if stream
        else parsed.choices[0].message.content
    )
    assert text == TEXT
    assert response.headers["x-interlock-failovers"] == "1"
    assert response.headers["x-interlock-model"] == "gpt-fake"


def test_quota_is_never_retried_on_the_same_key(stack: Stack, fake: FakeOpenAI) -> None:
    fake.reset()
    with pytest.raises(openai.RateLimitError):
        create(stack, "fake/quota")
    assert fake.calls["quota"] == 1


def test_client_errors_return_at_once_without_failover(stack: Stack, fake: FakeOpenAI) -> None:
    fake.reset()
    with pytest.raises(openai.BadRequestError) as info:
        create(stack, "client-error")
    assert info.value.body["param"] == "temperature"  # type: ignore[index]
    assert [r.json["model"] for r in fake.received] == ["bad-param"]


def test_stall_before_headers_fails_over(stack: Stack) -> None:
    for stream in (False, True):
        response = create(stack, "stall-fallback", stream=stream)
        assert response.headers["x-interlock-model"] == "gpt-fake"
        assert response.headers["x-interlock-failovers"] == "1"


def test_stall_before_headers_without_fallback_is_504(stack: Stack) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        create(stack, "fake/stall-headers")
    assert info.value.status_code == 504
    assert info.value.body["type"] == "timeout_error"  # type: ignore[index]


def test_stall_mid_stream_ends_with_an_error_event_and_partial_usage(stack: Stack) -> None:
    body = {"model": "fake/stall-midstream", "messages": MESSAGES, "stream": True}
    response = raw.post(
        f"{stack.edge_url}/v1/chat/completions", body, stack.token(tenant="stall-tenant")
    )
    text = response.body.decode()
    assert response.status == 200 and "[DONE]" not in text
    assert '"content":"Hello"' in text  # what arrived before the stall reached the client
    last = raw.RawResponse(
        200, {}, text.strip().split("\n\n")[-1].removeprefix("data: ").encode()
    ).json()
    assert last["error"]["message"] == "the upstream stream stalled (idle timeout)"
    logs = stack.wait_for_log("interlock.usage", '"tenant":"stall-tenant"')
    usage_lines = [line for line in logs.splitlines() if '"tenant":"stall-tenant"' in line]
    assert usage_lines and '"usage_estimated":true' in usage_lines[-1]


def test_key_pool_rotates_past_a_rejected_key(stack: Stack, fake: FakeOpenAI) -> None:
    fake.reset()
    model = f"keyed/{uuid.uuid4().hex}"
    keys_seen = set()
    for _ in range(3):
        response = create(stack, f"pool/{model}")
        assert response.parse().choices[0].message.content == TEXT
    keys_seen = {r.headers["Authorization"] for r in fake.received}
    assert keys_seen == {"Bearer sk-bad", "Bearer sk-good"}
    # The rejected key rests: once found out, later requests go straight to the good one.
    assert [r.headers["Authorization"] for r in fake.received][-2:] == ["Bearer sk-good"] * 2


def test_circuit_opens_and_fails_fast(stack: Stack, fake: FakeOpenAI) -> None:
    fake.reset()
    statuses = []
    for _ in range(6):
        with pytest.raises(openai.APIStatusError) as info:
            create(stack, "tripping")
        statuses.append(info.value.status_code)
    upstream_calls = fake.calls["fail-503"]
    assert statuses[-1] == 503
    assert info.value.body["code"] == "circuit_open"  # type: ignore[index]
    assert int(info.value.response.headers["retry-after"]) >= 1
    # min_requests is 3 and a request counts once however often it was retried (1 + 2
    # retries each): the breaker opened after the third request, and later requests never
    # reached the upstream.
    assert upstream_calls == 9


def test_context_length_error_fails_over_to_the_next_target(stack: Stack) -> None:
    response = create(stack, "context-fallback")
    assert response.headers["x-interlock-model"] == "gpt-fake"
    assert response.headers["x-interlock-failovers"] == "1"


def test_tier_overrides_pick_other_targets(stack: Stack) -> None:
    paid = client(stack).chat.completions.with_raw_response.create(
        model="tiered", messages=MESSAGES
    )
    free_client = openai.OpenAI(
        base_url=f"{stack.edge_url}/v1", api_key=stack.token(tier="free"), max_retries=0
    )
    free = free_client.chat.completions.with_raw_response.create(model="tiered", messages=MESSAGES)
    assert paid.headers["x-interlock-provider"] == "fake"
    assert (free.headers["x-interlock-provider"], free.headers["x-interlock-model"]) == (
        "mock",
        "mock-cheap",
    )


def test_a_client_that_hangs_up_mid_stream_is_still_accounted(stack: Stack) -> None:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", stack.edge_port, timeout=10)
    body = orjson.dumps({"model": "fake/stall-midstream", "stream": True, "messages": MESSAGES})
    headers = {
        "authorization": f"Bearer {stack.token(tenant='hangup-tenant')}",
        "content-type": "application/json",
    }
    connection.request("POST", "/v1/chat/completions", body, headers)
    response = connection.getresponse()
    assert response.status == 200
    received = b""
    while b"Hello" not in received:  # the first chunks arrive (then the upstream stalls)...
        piece = response.read1(4096)
        assert piece, "stream ended before any content"
        received += piece
    connection.close()  # ...and the client left while the upstream stalls
    logs = stack.wait_for_log("interlock.usage", '"tenant":"hangup-tenant"')
    line = next(line for line in logs.splitlines() if '"tenant":"hangup-tenant"' in line)
    assert '"outcome":"cancelled"' in line and '"usage_estimated":true' in line


# --- timeouts by kind (issue 9): first_byte_timeout 1s for streams, completion_timeout 2s ---


def test_a_completion_slower_than_the_first_byte_timeout_succeeds(
    stack: Stack, fake: FakeOpenAI
) -> None:
    fake.calls.clear()
    response = create(stack, "slow/slow-1500")
    assert response.parse().choices[0].message.content == TEXT
    assert response.headers["x-interlock-attempts"] == "1"
    assert fake.calls["slow-1500"] == 1


def test_a_completion_past_its_timeout_is_attempted_once(stack: Stack, fake: FakeOpenAI) -> None:
    """The upstream had the request: retrying it on the same target would run (and bill) it
    again, so the 504 comes after one attempt although max_retries is 2."""
    fake.calls.clear()
    with pytest.raises(openai.APIStatusError) as info:
        create(stack, "slow/slow-3000")
    assert info.value.status_code == 504
    assert info.value.response.headers["x-interlock-attempts"] == "1"
    assert fake.calls["slow-3000"] == 1


def test_a_stream_without_a_first_chunk_in_time_is_attempted_once(
    stack: Stack, fake: FakeOpenAI
) -> None:
    fake.calls.clear()
    with pytest.raises(openai.APIStatusError) as info:
        create(stack, "slow/slow-1500", stream=True)
    assert info.value.status_code == 504
    assert fake.calls["slow-1500"] == 1
