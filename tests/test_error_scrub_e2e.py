"""Issue 8, finding 6: upstream error text is never relayed verbatim.

An upstream (tests/support/fake_leaky.py) answers errors that quote the gateway's own API key
and internal addresses, as non-stream bodies and as in-stream error events, in the OpenAI,
Anthropic and Gemini formats. Through the real edge and core, the tenant must see neither,
on chat completions and on Anthropic messages (translated and passthrough); the operator's log
keeps the original words under the request id, with the key itself masked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import raw
from tests.support.fake_leaky import INTERNAL_ADDR, INTERNAL_HOST, FakeLeaky
from tests.support.stack import Stack

KEYS = {
    "oai": "sk-leaky-0123456789abcdef",
    "ant": "ant-plain-key-42",  # no credential shape: only the verbatim-key rule catches it
    "gem": "gm-plain-key-77",
}
SECRETS = (*KEYS.values(), INTERNAL_HOST, INTERNAL_ADDR, "10.20.30.40", "internal.corp")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLeaky]:
    server = FakeLeaky().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, fake: FakeLeaky) -> Iterator[Stack]:
    def provider(kind: str, key: str, base: str) -> dict[str, object]:
        return {"kind": kind, "base_url": base, "api_key": key, "allow_any_model": True}

    overrides = {
        "core": {"resilience": {"max_retries": 0}},
        "providers": {
            "oai": provider("openai", KEYS["oai"], f"{fake.url}/v1"),
            "ant": provider("anthropic", KEYS["ant"], fake.url),
            "gem": provider("gemini", KEYS["gem"], fake.url),
        },
    }
    running = Stack(Path(tmp_path_factory.mktemp("scrub")), overrides).start()
    yield running
    running.stop()


def _assert_clean(stack: Stack, response: raw.RawResponse) -> None:
    seen = response.body.decode(errors="replace") + repr(response.headers)
    for secret in SECRETS:
        assert secret not in seen, (secret, seen)
    request_id = response.headers["x-request-id"]
    logs = stack.wait_for_log("not relayed verbatim", request_id)
    line = next(x for x in logs.splitlines() if request_id in x and "not relayed" in x)
    assert INTERNAL_HOST in line  # the operator keeps the original words...
    assert all(key not in logs for key in KEYS.values())  # ...but never a key


def _chat(stack: Stack, model: str, stream: bool) -> raw.RawResponse:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return raw.post(f"{stack.edge_url}/v1/chat/completions", body, stack.token())


def _messages(stack: Stack, model: str, stream: bool) -> raw.RawResponse:
    body = {
        "model": model,
        "max_tokens": 32,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
    }
    headers = {"anthropic-version": "2023-06-01"}
    return raw.post(f"{stack.edge_url}/v1/messages", body, stack.token(), headers)


@pytest.mark.parametrize("provider", ["oai", "ant", "gem"])
@pytest.mark.parametrize("model", ["leak-400", "leak-500"])
@pytest.mark.parametrize("stream", [False, True])
def test_chat_errors_before_the_first_byte_are_scrubbed(
    stack: Stack, provider: str, model: str, stream: bool
) -> None:
    response = _chat(stack, f"{provider}/{model}", stream)
    assert response.status >= 400
    _assert_clean(stack, response)
    if model == "leak-400":  # the tenant can fix this one: the provider's words, scrubbed
        assert "rejected the request" in response.json()["error"]["message"]


@pytest.mark.parametrize("provider", ["oai", "ant", "gem"])
def test_chat_mid_stream_error_events_are_scrubbed(stack: Stack, provider: str) -> None:
    response = _chat(stack, f"{provider}/leak-midstream", True)
    assert response.status == 200 and b'"error"' in response.body
    _assert_clean(stack, response)


@pytest.mark.parametrize("provider", ["ant", "oai", "gem"])  # ant: the passthrough path
@pytest.mark.parametrize(
    ("model", "stream"),
    [
        ("leak-400", False),
        ("leak-400", True),
        ("leak-500", False),
        ("leak-500", True),
        ("leak-midstream", True),
    ],
)
def test_messages_errors_are_scrubbed(
    stack: Stack, provider: str, model: str, stream: bool
) -> None:
    response = _messages(stack, f"{provider}/{model}", stream)
    assert response.status >= 400 or b"event: error" in response.body
    _assert_clean(stack, response)
