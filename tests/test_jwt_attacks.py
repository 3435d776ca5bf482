"""Every JWT attack in the README's threat model (the "tenant → edge" rows) is a 401 with an
OpenAI error body at the edge."""

from __future__ import annotations

import base64
import http.client
import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core.ops.keys import load_signing_key
from tests.support import raw
from tests.support.fake_openai import FakeOpenAI
from tests.support.stack import Stack

BODY = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(stack: Stack, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": stack.config.auth.issuer,
        "aud": stack.config.auth.audience,
        "sub": "acme",
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(stack: Stack, payload: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
    key, alg, kid = load_signing_key(stack.config.auth)
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid, **(headers or {})})


def call(stack: Stack, token: str) -> raw.RawResponse:
    return raw.post(f"{stack.edge_url}/v1/chat/completions", BODY, token)


def assert_401(response: raw.RawResponse, code: str | None = None) -> None:
    assert response.status == 401, response.body
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    if code:
        assert error["code"] == code


def test_valid_token_is_accepted(stack: Stack) -> None:
    assert call(stack, sign(stack, claims(stack))).status == 200


def test_expired(stack: Stack) -> None:
    now = int(time.time())
    assert_401(
        call(stack, sign(stack, claims(stack, iat=now - 700, exp=now - 600))), "token_expired"
    )


def test_expired_token_is_rejected_even_after_it_was_cached(stack: Stack) -> None:
    now = int(time.time())
    token = sign(stack, claims(stack, iat=now - 10, exp=now + 1))
    assert call(stack, token).status == 200
    # leeway is 5 s in the test config: wait past exp + leeway without sleeping blindly.
    deadline = time.time() + 15
    while time.time() < now + 1 + 5 + 1 and time.time() < deadline:
        time.sleep(0.25)
    assert_401(call(stack, token), "token_expired")


def test_nbf_in_future(stack: Stack) -> None:
    assert_401(
        call(stack, sign(stack, claims(stack, nbf=int(time.time()) + 600))), "token_not_yet_valid"
    )


def test_missing_exp(stack: Stack) -> None:
    response = call(stack, sign(stack, claims(stack, exp=None)))
    assert_401(response)
    assert "exp" in response.json()["error"]["message"]


@pytest.mark.parametrize("claim", ["iat", "iss", "aud", "sub", "jti"])
def test_missing_required_claims(stack: Stack, claim: str) -> None:
    assert_401(call(stack, sign(stack, claims(stack, **{claim: None}))))


def test_ttl_over_maximum(stack: Stack) -> None:
    now = int(time.time())
    assert_401(
        call(stack, sign(stack, claims(stack, iat=now, exp=now + 2 * 3600))), "token_ttl_too_long"
    )


def test_wrong_signature(stack: Stack) -> None:
    token = sign(stack, claims(stack))
    head, _payload, signature = token.split(".")
    tampered = _b64(json.dumps(claims(stack, sub="someone-else")).encode())
    assert_401(call(stack, f"{head}.{tampered}.{signature}"))


def test_alg_none(stack: Stack) -> None:
    _, _, kid = load_signing_key(stack.config.auth)
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
    body = _b64(json.dumps(claims(stack)).encode())
    assert_401(call(stack, f"{header}.{body}."))


def test_hs256_signed_with_public_key(stack: Stack) -> None:
    private, _, kid = load_signing_key(stack.config.auth)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import hashlib
    import hmac

    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = _b64(json.dumps(claims(stack)).encode())
    signature = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    assert_401(call(stack, f"{header}.{body}.{_b64(signature)}"))


@pytest.mark.parametrize(
    "field,value",
    [
        ("aud", "someone-else"),
        ("iss", "evil"),
        ("iss", "interlock-test-evil"),
        ("iss", "interlock-tes"),
        ("aud", ["other"]),
    ],
)
def test_wrong_audience_or_issuer(stack: Stack, field: str, value: object) -> None:
    assert_401(call(stack, sign(stack, claims(stack, **{field: value}))))


def test_unknown_kid(stack: Stack) -> None:
    assert_401(call(stack, sign(stack, claims(stack), {"kid": "no-such-key"})))


def test_kid_path_injection(stack: Stack) -> None:
    assert_401(call(stack, sign(stack, claims(stack), {"kid": "../../../../dev/null"})))


def test_foreign_key_with_known_kid(stack: Stack) -> None:
    _, _, kid = load_signing_key(stack.config.auth)
    foreign = ec.generate_private_key(ec.SECP256R1())
    assert_401(
        call(stack, jwt.encode(claims(stack), foreign, algorithm="ES256", headers={"kid": kid}))
    )


def test_unknown_crit_header(stack: Stack) -> None:
    assert_401(call(stack, sign(stack, claims(stack), {"crit": ["exp-ext"], "exp-ext": 1})))


def test_oversized_header(stack: Stack) -> None:
    # Over the 8 KiB cap but under the HTTP server's own header limit: our check must catch it.
    assert_401(call(stack, "x" * 9_000), "token_too_large")


def test_malformed_and_missing(stack: Stack) -> None:
    assert_401(call(stack, "not.a.jwt"))
    assert_401(raw.post(f"{stack.edge_url}/v1/chat/completions", BODY), "missing_api_key")
    assert_401(
        raw.post(
            f"{stack.edge_url}/v1/chat/completions", BODY, headers={"authorization": "Basic abc"}
        )
    )


def test_model_not_allowed_is_403(stack: Stack) -> None:
    token = stack.token(tenant="tenant-a", models=["gpt-fake"])
    response = call(stack, token)
    assert response.status == 403
    error = response.json()["error"]
    assert error["code"] == "model_not_allowed" and error["param"] == "model"


# Issue 8: headers that name the token's own key, claim types and caps.


@pytest.mark.parametrize("header", ["jku", "x5u", "jwk", "x5c"])
def test_token_naming_its_own_key_is_refused_and_nothing_is_fetched(
    stack: Stack, fake_openai: FakeOpenAI, header: str
) -> None:
    """Refused even when correctly signed by the gateway's own key (old code served it): the
    only keys are the configured JWKS. The URL headers point at a live local server, which
    must never be asked for anything."""
    fake_openai.reset()
    foreign = ec.generate_private_key(ec.SECP256R1())
    foreign_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(foreign.public_key()))
    values: dict[str, Any] = {
        "jku": f"{fake_openai.url}/jwks.json",
        "x5u": f"{fake_openai.url}/cert.pem",
        "jwk": foreign_jwk,
        "x5c": ["MIIB"],
    }
    assert_401(call(stack, sign(stack, claims(stack), {header: values[header]})))
    _, _, kid = load_signing_key(stack.config.auth)
    forged = jwt.encode(
        claims(stack), foreign, algorithm="ES256", headers={"kid": kid, header: values[header]}
    )
    assert_401(call(stack, forged))
    assert fake_openai.received == []


@pytest.mark.parametrize(
    "claim,value",
    [
        ("sub", 12345),
        ("sub", ["acme"]),
        ("sub", {"tenant": "acme"}),
        ("sub", " acme"),
        ("sub", "ac\x00me"),
        ("sub", "ac\rme"),
        ("sub", "ac\x7fme"),
        ("sub", "a" * 257),
        ("tier", 7),
        ("tier", ["free"]),
        ("tier", "fr\x00ee"),
        ("tier", "fr\ree"),
        ("tier", "t" * 65),
        ("jti", 42),
        ("jti", "j" * 257),
        ("jti", "j\x00"),
    ],
)
def test_claims_of_the_wrong_type_or_with_control_characters(
    stack: Stack, claim: str, value: object
) -> None:
    """Always a clean 401 naming nothing internal; CR/NUL/DEL in sub or tier used to reach
    the hop headers and fail there with a 5xx."""
    assert_401(call(stack, sign(stack, claims(stack, **{claim: value}))))


@pytest.mark.parametrize(
    "models",
    [
        ["mock-1", *(f"m{i}" for i in range(300))],  # over the 256-entry cap, fits the header
        ["mock-1", "x" * 4000],  # one entry far over the 256-character cap
        "mock-1",  # not a list
        ["mock-1", 7],
        ["mock-1", "a,b"],
    ],
)
def test_models_claim_is_bounded(stack: Stack, models: object) -> None:
    assert_401(call(stack, sign(stack, claims(stack, models=models))))


def test_models_claim_with_ten_thousand_entries(tmp_path: Path) -> None:
    """With the header cap raised to its maximum (64 KiB), a 10,000-entry claim fits in the
    header: the claim cap, not the header cap, must refuse it."""
    stack = Stack(tmp_path, {"auth": {"max_header_bytes": 65536}}).start()
    try:
        token = sign(stack, claims(stack, models=["mock-1", *("m" for _ in range(10_000))]))
        assert 8192 < len(token) < 65536
        assert_401(call(stack, token))
        assert call(stack, sign(stack, claims(stack, models=["mock-1"]))).status == 200
    finally:
        stack.stop()


def test_duplicate_authorization_headers_are_refused(stack: Stack) -> None:
    """Both copies valid: the old edge let the last one win (200)."""
    first, second = stack.token(tenant="tenant-a"), stack.token(tenant="tenant-b")
    response = raw_request(
        stack,
        "/v1/chat/completions",
        [("authorization", f"Bearer {first}"), ("authorization", f"Bearer {second}")],
    )
    assert response.status == 400, response.body
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("duplicate_header", "authorization")
    other_duplicates = [("authorization", f"Bearer {first}"), ("accept", "a"), ("accept", "b")]
    assert raw_request(stack, "/v1/chat/completions", other_duplicates).status == 200


def test_duplicate_x_api_key_headers_are_refused(stack: Stack) -> None:
    token = stack.token()
    body = {"model": "mock-1", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    response = raw_request(
        stack, "/v1/messages", [("x-api-key", token), ("x-api-key", token)], body
    )
    assert response.status == 400, response.body
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "x-api-key" in response.json()["error"]["message"]
    single = raw_request(stack, "/v1/messages", [("x-api-key", token)], body)
    assert single.status == 200


def raw_request(
    stack: Stack,
    path: str,
    headers: list[tuple[str, str]],
    body: dict[str, Any] | None = None,
) -> raw.RawResponse:
    """http.client with repeated headers (a dict cannot carry them)."""
    payload = orjson.dumps(body or BODY)
    connection = http.client.HTTPConnection("127.0.0.1", stack.edge_port, timeout=30)
    try:
        connection.putrequest("POST", path)
        for name, value in [("content-type", "application/json"), *headers]:
            connection.putheader(name, value)
        connection.putheader("content-length", str(len(payload)))
        connection.endheaders(payload)
        response = connection.getresponse()
        return raw.RawResponse(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()
