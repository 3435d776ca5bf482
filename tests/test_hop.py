"""The hop credential: identity inside it, bound to method, path, request id, body and expiry;
every malformed value is refused with None, never an exception."""

from __future__ import annotations

import base64
import dataclasses
import json
import time

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import hop

KEY = hop.HopKey(b"x" * 40)
NOW = 1_900_000_000
IDENTITY = hop.HopIdentity("acme", "free", "mock-*", NOW + 600)
BODY = b'{"model":"mock-1"}'
PATH = "/v1/chat/completions"


def signed(identity: hop.HopIdentity = IDENTITY, body: bytes = BODY, now: float = NOW) -> str:
    return hop.sign(KEY, identity, "POST", PATH, "req_1", body, now=now)


def test_round_trip_keeps_identity_and_binds_the_body() -> None:
    claims = hop.authenticate(KEY, signed(), "POST", PATH, "req_1")
    assert claims is not None
    assert claims.identity == IDENTITY and claims.issued_at == NOW
    assert claims.body_digest == hop.body_digest(BODY) != hop.body_digest(BODY + b" ")
    assert len(claims.nonce) == 32
    other = hop.authenticate(KEY, signed(), "POST", PATH, "req_1")
    assert other is not None and other.nonce != claims.nonce  # fresh nonce per request


def test_method_path_request_id_and_secret_are_bound() -> None:
    credential = signed()
    assert hop.authenticate(KEY, credential, "GET", PATH, "req_1") is None
    assert hop.authenticate(KEY, credential, "POST", "/v1/embeddings", "req_1") is None
    assert hop.authenticate(KEY, credential, "POST", PATH, "req_2") is None
    assert hop.authenticate(hop.HopKey(b"y" * 40), credential, "POST", PATH, "req_1") is None


def test_a_tampered_payload_fails_the_mac() -> None:
    version, payload, mac = signed().split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    for field, value in (("tenant", "victim"), ("models", "*"), ("exp", NOW + 10**6)):
        forged = base64.urlsafe_b64encode(orjson.dumps({**claims, field: value})).rstrip(b"=")
        assert (
            hop.authenticate(KEY, f"{version}.{forged.decode()}.{mac}", "POST", PATH, "req_1")
            is None
        )


@pytest.mark.parametrize(
    "tenant",
    ["café", " padded ", "a\r\nb", "a\x00b", "a\x7fb", "é" * 256, "租户", "a\u2028b\U0001f600"],
)
def test_any_sub_round_trips_exactly(tenant: str) -> None:
    identity = dataclasses.replace(IDENTITY, tenant=tenant, tier=f"t{tenant}")
    credential = signed(identity)
    assert credential.isascii() and credential.isprintable()  # a valid header value
    claims = hop.authenticate(KEY, credential, "POST", PATH, "req_1")
    assert claims is not None and claims.identity == identity


GARBAGE = [
    None,
    "",
    "v2",
    "v2..",
    "v1:²:abc",
    "v1:" + "9" * 5000 + ":abc",
    "v2.²." + "A" * 43,
    "v2." + "9" * 5000 + "." + "A" * 43,
    "v2.e30.e30.e30",
    "v2:e30:" + "A" * 43,
    "v2.e30." + "A" * 42,
    "v2.e30." + "é" * 43,
    "v2.e=30." + "A" * 43,
    "v2." + "A" * (hop.MAX_CREDENTIAL_CHARS + 1) + "." + "A" * 43,
]


@pytest.mark.parametrize("credential", GARBAGE)
def test_garbage_is_refused_without_raising(credential: str | None) -> None:
    assert hop.authenticate(KEY, credential, "POST", PATH, "req_1") is None


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200), st.text(max_size=40))
def test_no_input_makes_authenticate_raise(credential: str, request_id: str) -> None:
    assert hop.authenticate(KEY, credential, "POST", PATH, request_id) is None


def test_a_signed_payload_with_wrong_types_is_refused() -> None:
    """Even a payload the MAC covers (a key leak, a buggy edge) cannot make the core raise."""
    for claims in (
        [],
        {"tenant": "a"},
        {"tenant": "a", "tier": "t", "models": "*", "exp": True, "iat": 1, "nonce": "n" * 32},
        {"tenant": "a", "tier": "t", "models": "*", "exp": 10**40, "iat": 1, "nonce": "n" * 32},
        {"tenant": "", "tier": "t", "models": "*", "exp": 1, "iat": 1, "nonce": "n" * 32},
        {"tenant": "a", "tier": "t", "models": "*", "exp": 1, "iat": 1, "nonce": "n" * 32},
        {"tenant": "a", "tier": "t", "models": "*", "exp": 1, "iat": 1.5, "nonce": "n" * 32},
    ):
        payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
        mac = KEY.mac("POST", PATH, "req_1", payload)
        assert hop.authenticate(KEY, f"v2.{payload.decode()}.{mac}", "POST", PATH, "req_1") is None


def test_request_ids_are_visible_bounded_ascii() -> None:
    assert hop.valid_request_id("req_" + "a" * 24)
    for bad in (None, "", "a" * 129, "req 1", "req\x00", "réq", "req\r\n"):
        assert not hop.valid_request_id(bad)


def test_freshness_window_and_token_expiry() -> None:
    claims = hop.authenticate(KEY, signed(now=NOW), "POST", PATH, "req_1")
    assert claims is not None
    skew = 60
    assert hop.remember_for(claims, NOW, skew) == skew + 1
    assert hop.remember_for(claims, NOW + skew, skew) > 0
    assert hop.remember_for(claims, NOW + skew + 1, skew) == 0  # stale
    assert hop.remember_for(claims, NOW - skew - 1, skew) == 0  # from the future
    expiring = dataclasses.replace(IDENTITY, expires_at=NOW + 10)
    claims = hop.authenticate(KEY, signed(expiring), "POST", PATH, "req_1")
    assert claims is not None
    assert hop.remember_for(claims, NOW + 10 + hop.EXPIRY_LEEWAY_S, skew) > 0
    assert hop.remember_for(claims, NOW + 11 + hop.EXPIRY_LEEWAY_S, skew) == 0  # token expired
    assert hop.expires_at(NOW + 0.5, 30) == NOW + 30


def test_hop_key_repr_hides_the_secret() -> None:
    assert "x" * 10 not in repr(KEY)


def test_signing_is_cheap() -> None:
    """The edge's hot path: one sha256 of the body and one HMAC (about 10 µs for 1 KiB)."""
    body = b"x" * 1024
    runs = 2000
    started = time.perf_counter()
    for _ in range(runs):
        hop.sign(KEY, IDENTITY, "POST", PATH, "req_1", body)
    per_call_us = (time.perf_counter() - started) / runs * 1e6
    assert per_call_us < 200, per_call_us  # generous: the machine is shared


def test_max_skew_defaults_to_a_minute_and_is_bounded() -> None:
    from shared.config import ConfigError, parse_config

    def skew(hop_section: dict[str, str]) -> int:
        raw = {"providers": {"m": {"kind": "mock"}}, "hop": {"secret": "s" * 40, **hop_section}}
        return parse_config(raw, "test", {}).hop.max_skew_s

    assert skew({}) == hop.DEFAULT_MAX_SKEW_S == 60
    assert skew({"max_skew": "2m"}) == 120
    for bad in ("0s", "500ms", "1h"):
        with pytest.raises(ConfigError, match=r"hop\.max_skew"):
            skew({"max_skew": bad})
