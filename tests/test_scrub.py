"""core.providers.scrub: what of an upstream error a tenant may see (issue 8, finding 6)."""

from __future__ import annotations

import logging

import orjson
import pytest

from core.observe import context as requestctx
from core.providers.adapters.anthropic.errors import parse_error as anthropic_error
from core.providers.adapters.base import ProviderError, Target
from core.providers.adapters.gemini.errors import parse_error as gemini_error
from core.providers.adapters.openai_compat import ADAPTER as OPENAI
from core.providers.scrub import OVERLOADED, sanitize, scrub
from shared.config import ProviderConfig
from shared.errors import FailureClass
from tests.support.providers import provider_of

KEY = "plain-operator-key-9"  # no credential shape: only the verbatim rule can catch it
PROVIDER = ProviderConfig("up", "openai", None, (KEY,), {}, None, False)
TARGET = Target(provider_of(PROVIDER), "m", PROVIDER.api_keys[0])


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("Incorrect API key provided: sk-proj-abc123XYZ789", "sk-proj-abc123XYZ789"),
        ("bad request to http://10.0.0.7:8000/v1/chat", "10.0.0.7"),
        ("see https://console.internal/keys?id=1", "console.internal"),
        ("host inference-3.gpu.svc.cluster.local refused", "inference-3"),
        ("node gpu-box-7.corp:9000 down", "gpu-box-7"),
        ("key=abcd1234 was rejected", "abcd1234"),
        ('"api_key": "zz-top-secret"', "zz-top-secret"),
        ("Authorization: Bearer abc.def.ghi", "abc.def.ghi"),
        ("credentials AKIAIOSFODNN7EXAMPLE invalid", "AKIAIOSFODNN7EXAMPLE"),
        ("session ASIAY34FZKBOKMUTVV7A expired", "ASIAY34FZKBOKMUTVV7A"),
        ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", "eyJhbGciOiJIUzI1NiJ9"),
        ("id 0123456789abcdef0123456789abcdef01", "0123456789abcdef0123456789abcdef01"),
        (
            "blob QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0MTIz==",
            "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0MTIz",
        ),
        ("gemini key AIzaSyA1234567890abcdefghijklmnopqrs", "AIzaSyA1234567890"),
        ("from [fd00::1]:8080 and 2001:db8::5", "fd00::1"),
        ("from [fd00::1]:8080 and 2001:db8::5", "2001:db8::5"),
        (f"echo {KEY} back", KEY),
    ],
)
def test_credentials_and_internal_addresses_are_scrubbed(text: str, leak: str) -> None:
    assert leak not in scrub(text, [KEY])


@pytest.mark.parametrize(
    "text",
    [
        "Invalid value for 'temperature': must be <= 2.",
        "messages.0.content: expected a string",
        "Invalid schema for response_format.json_schema.schema: 'required' is not an array",
        "This model's maximum context length is 8192 tokens; max_tokens: 100",
    ],
)
def test_ordinary_validation_messages_survive(text: str) -> None:
    assert scrub(text) == text


def _openai(status: int, message: str, **extra: object) -> ProviderError:
    body = orjson.dumps({"error": {"message": message, "type": "x", **extra}})
    return OPENAI.parse_error(status, {}, body)


def test_client_errors_keep_the_scrubbed_provider_message_and_known_fields() -> None:
    error = sanitize(
        _openai(400, f"bad image from 10.1.1.1 with {KEY}", code="invalid_value", param="messages"),
        TARGET,
    )
    assert error.message == "bad image from [address] with [redacted-key]"
    assert (error.code, error.param) == ("invalid_value", "messages")
    odd = sanitize(_openai(400, "no", code=f"leak {KEY}", param="x y z http://h"), TARGET)
    assert odd.code is None and odd.param is None


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (_openai(500, "worker 10.0.0.9 crashed"), "failed to process"),
        (_openai(503, "pool gpu.internal busy"), OVERLOADED),
        (_openai(429, "slow down, org org-123"), "rate limiting"),
        (
            anthropic_error(529, {}, b'{"error":{"type":"overloaded_error","message":"x"}}'),
            OVERLOADED,
        ),
        (
            gemini_error(500, {}, b'{"error":{"code":500,"message":"x","status":"INTERNAL"}}'),
            "failed",
        ),
    ],
)
def test_operator_side_failures_get_a_fixed_gateway_message(
    error: ProviderError, expected: str
) -> None:
    assert expected in sanitize(error, TARGET).message


def test_the_original_is_logged_with_the_request_id_and_without_keys(
    caplog: pytest.LogCaptureFixture,
) -> None:
    requestctx.bind("acme", "req_scrub_1")
    with caplog.at_level(logging.WARNING, logger="interlock.upstream"):
        sanitize(_openai(500, f"host gpu.internal said {KEY}"), TARGET)
    (record,) = caplog.records
    line = record.getMessage()
    assert "req_scrub_1" in line and "gpu.internal" in line and KEY not in line


def test_sanitize_is_idempotent_and_leaves_gateway_errors_alone() -> None:
    error = ProviderError(503, "mock/x is temporarily unavailable", FailureClass.TRANSIENT)
    error.code = "circuit_open"
    assert sanitize(sanitize(error, TARGET), TARGET).message == "mock/x is temporarily unavailable"
    assert error.code == "circuit_open"


def test_huge_messages_are_cut_before_scrubbing_and_never_keep_half_a_key() -> None:
    text = "x " * 1999 + "k" + KEY + " tail " * 100_000
    cleaned = scrub(text, [KEY])
    assert len(cleaned) <= 1003 and "plain-operator" not in cleaned
    cut = scrub("word " * 799 + "wor" + "sk-abcdefgh0123456789", [])
    assert "sk-abc" not in cut and "0123456789" not in cut
