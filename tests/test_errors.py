"""shared.errors: the one error module (issue 9, finding 9).

The hierarchy, the status each failure class maps to, the envelopes per API, and the factories
every adapter uses instead of its own copies; the credentials sentence exists once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import orjson
import pytest

import core.providers.adapters.base
import core.providers.scrub
import shared.errors
from core.providers.adapters.anthropic.errors import parse_error as anthropic_error
from core.providers.adapters.azure import ADAPTER as AZURE
from core.providers.adapters.bedrock.errors import parse_http_error as bedrock_error
from core.providers.adapters.gemini.errors import parse_error as gemini_error
from core.providers.adapters.openai_compat import ADAPTER as OPENAI
from core.providers.scrub import sanitize
from shared.errors import (
    OVERLOADED,
    FailureClass,
    GatewayError,
    ProviderError,
    client_status_for,
    error_payload,
    invalid_upstream,
    stream_incomplete,
    upstream_error,
    upstream_object,
    withheld_message,
)

ROOT = Path(__file__).resolve().parents[1]
SECRET = "sk-live-SECRET0123456789"
ParseError = Callable[[int, Mapping[str, str], bytes], ProviderError]


def test_provider_error_is_one_class_reexported_for_the_adapters() -> None:
    assert core.providers.adapters.base.ProviderError is ProviderError
    assert issubclass(ProviderError, GatewayError)
    assert core.providers.scrub.OVERLOADED is OVERLOADED


def test_the_docstring_draws_every_class_and_failure_class() -> None:
    doc = shared.errors.__doc__ or ""
    for name in ("GatewayError", "ProviderError", "openai", "anthropic"):
        assert name in doc
    for failure in FailureClass:
        assert f"\n    {failure.value} " in doc, failure


@pytest.mark.parametrize(
    ("failure", "upstream", "client"),
    [
        (FailureClass.RATE_LIMIT, 429, 429),
        (FailureClass.QUOTA_EXHAUSTED, 400, 429),
        (FailureClass.TRANSIENT, 500, 502),
        (FailureClass.TRANSIENT, 503, 503),
        (FailureClass.TRANSIENT, 529, 503),
        (FailureClass.TIMEOUT, 408, 504),
        (FailureClass.AUTH, 401, 502),
        (FailureClass.AUTH, 403, 502),
        (FailureClass.CONTEXT_LENGTH, 400, 400),
        (FailureClass.CLIENT_ERROR, 422, 422),
        (FailureClass.CLIENT_ERROR, 200, 400),
        (FailureClass.CONTENT_FILTER, 400, 400),
    ],
)
def test_client_status_follows_the_documented_table(
    failure: FailureClass, upstream: int, client: int
) -> None:
    assert client_status_for(failure, upstream) == client
    assert upstream_error(upstream, failure, "words", {}).status == client


def _openai(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
    return OPENAI.parse_error(status, headers, body)


def _azure(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
    return AZURE.parse_error(status, headers, body)


@pytest.mark.parametrize(
    ("parse", "body"),
    [
        (_openai, {"error": {"message": f"Incorrect API key {SECRET}", "code": "invalid_api_key"}}),
        (_azure, {"error": {"message": f"Access denied: key {SECRET}", "code": "401"}}),
        (
            anthropic_error,
            {
                "type": "error",
                "error": {"type": "authentication_error", "message": f"invalid x-api-key {SECRET}"},
            },
        ),
        (bedrock_error, {"__type": "UnrecognizedClientException", "message": f"key {SECRET}"}),
        (
            gemini_error,
            {"error": {"code": 401, "message": f"key {SECRET}", "status": "UNAUTHENTICATED"}},
        ),
    ],
)
def test_every_adapter_withholds_an_auth_failures_words(
    parse: ParseError, body: dict[str, object]
) -> None:
    error = parse(401, {}, orjson.dumps(body))
    assert error.failure_class is FailureClass.AUTH
    assert error.status == 502
    assert error.message == withheld_message(FailureClass.AUTH, 401)
    assert error.code == "upstream_auth_failed"
    assert SECRET not in error.message


def test_scrub_and_the_factory_use_one_table_of_sentences() -> None:
    for failure in FailureClass:
        error = sanitize(upstream_error(500, failure, f"detail {SECRET}", {}), None)
        expected = withheld_message(failure, 500)
        assert error.message == (expected or "detail [redacted-key]"), failure
    assert withheld_message(FailureClass.TRANSIENT, 529) == OVERLOADED
    assert withheld_message(FailureClass.CLIENT_ERROR, 400) is None


def test_an_empty_upstream_message_names_the_status_and_the_detail() -> None:
    assert upstream_error(500, FailureClass.TRANSIENT, "", {}).message == (
        "upstream error (HTTP 500)"
    )
    named = upstream_error(500, FailureClass.TRANSIENT, "", {}, detail="InternalServerException")
    assert named.message == "upstream error (HTTP 500, InternalServerException)"


def test_retry_after_prefers_the_header_then_what_the_body_said() -> None:
    from_header = upstream_error(
        429, FailureClass.RATE_LIMIT, "slow", {"retry-after": "7"}, retry_after_s=30.0
    )
    assert from_header.retry_after_s == 7.0
    assert from_header.headers["retry-after"] == "7"
    from_body = upstream_error(429, FailureClass.RATE_LIMIT, "slow", {}, retry_after_s=2.5)
    assert from_body.retry_after_s == 2.5 and from_body.headers["retry-after"] == "3"
    millis = upstream_error(503, FailureClass.TRANSIENT, "", {"retry-after-ms": "1500"})
    assert millis.retry_after_s == 1.5
    assert upstream_error(400, FailureClass.CLIENT_ERROR, "bad", {}).retry_after_s is None


def test_unreadable_answers_are_transient_and_gateway_written() -> None:
    for error in (invalid_upstream("a response without choices"), stream_incomplete()):
        assert (error.status, error.failure_class) == (502, FailureClass.TRANSIENT)
        # No upstream status: core.providers.scrub treats the text as the gateway's own.
        assert error.upstream_status is None
    assert invalid_upstream("x").message == "upstream returned x"
    assert stream_incomplete().message == "upstream stream ended before completion"


def test_upstream_object_reads_only_json_objects() -> None:
    assert upstream_object(b'{"a": 1}', "bad") == {"a": 1}
    with pytest.raises(ProviderError, match="upstream returned bad") as not_json:
        upstream_object(b"<html>", "bad")
    assert not_json.value.status == 502
    with pytest.raises(ProviderError, match="upstream returned no object"):
        upstream_object(b"[1]", "bad", "no object")
    with pytest.raises(ProviderError, match="upstream returned bad"):
        upstream_object(b"[1]", "bad")


def test_error_payload_is_lenient_so_the_status_decides() -> None:
    assert error_payload(b'{"error": {"message": "m"}}') == {"error": {"message": "m"}}
    assert error_payload(b"") == {}
    assert error_payload(b"<html>502 Bad Gateway</html>") == {}
    assert OPENAI.parse_error(503, {}, b"<html>busy</html>").failure_class is (
        FailureClass.TRANSIENT
    )


def test_envelopes_follow_the_api_the_client_called() -> None:
    overloaded = upstream_error(529, FailureClass.TRANSIENT, "", {})
    assert orjson.loads(overloaded.body_for("anthropic")) == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "upstream error (HTTP 529)"},
    }
    assert orjson.loads(overloaded.body_for("openai"))["error"]["type"] == "service_unavailable"
    auth = upstream_error(401, FailureClass.AUTH, SECRET, {}, code="upstream_auth_failed")
    assert orjson.loads(auth.body_for("openai"))["error"] == {
        "message": withheld_message(FailureClass.AUTH, 401),
        "type": "upstream_error",
        "param": None,
        "code": "upstream_auth_failed",
    }


@pytest.mark.parametrize(
    "text",
    [
        "rejected the gateway's credentials",
        'f"upstream returned {',
        '"upstream stream ended before completion"',
        "def invalid_upstream",
        "if body else {}",
    ],
)
def test_product_code_writes_each_error_factory_once(text: str) -> None:
    """The factories and sentences live in shared/errors.py only: no adapter keeps a copy."""
    holders = [
        str(path.relative_to(ROOT))
        for tier in ("edge", "core", "shared")
        for path in sorted((ROOT / tier).rglob("*.py"))
        if text in path.read_text()
    ]
    assert holders == ["shared/errors.py"]
