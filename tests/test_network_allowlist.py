"""Per-tenant network allowlists at the edge (issue 8): the token's `cidrs` claim and
`auth.tenant_cidrs`, against the real client address; X-Forwarded-For only from trusted proxies.

The test client always connects from 127.0.0.1, so "a client in 10.0.0.0/8" can only be
expressed through a trusted proxy's X-Forwarded-For.
"""

from __future__ import annotations

import http.client
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest

from core.ops.keys import load_signing_key
from tests.support import raw
from tests.support.stack import Stack

BODY = orjson.dumps({"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]})
TENANT_CIDRS = {"netco": ["10.0.0.0/8"], "loopco": ["127.0.0.0/8", "::1/128"]}


def _stack(tmp_path_factory: pytest.TempPathFactory, edge: dict[str, Any]) -> Iterator[Stack]:
    overrides = {"auth": {"tenant_cidrs": TENANT_CIDRS}, "edge": edge}
    stack = Stack(Path(tmp_path_factory.mktemp("net")), overrides).start()
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """No trusted proxies: the TCP peer is the client, whatever the headers say."""
    yield from _stack(tmp_path_factory, {})


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Behind a proxy on 127.0.0.1 (a load balancer, or Lambda Web Adapter on loopback)."""
    yield from _stack(tmp_path_factory, {"trusted_proxies": ["127.0.0.1/32"]})


def token(stack: Stack, tenant: str = "acme", cidrs: object = None) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": stack.config.auth.issuer,
        "aud": stack.config.auth.audience,
        "sub": tenant,
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    if cidrs is not None:
        payload["cidrs"] = cidrs
    key, alg, kid = load_signing_key(stack.config.auth)
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def post(stack: Stack, bearer: str, forwarded: list[str] = ()) -> raw.RawResponse:  # type: ignore[assignment]
    """One request; each item of `forwarded` is sent as its own X-Forwarded-For header."""
    connection = http.client.HTTPConnection("127.0.0.1", stack.edge_port, timeout=30)
    try:
        connection.putrequest("POST", "/v1/chat/completions")
        connection.putheader("content-type", "application/json")
        connection.putheader("authorization", f"Bearer {bearer}")
        for value in forwarded:
            connection.putheader("x-forwarded-for", value)
        connection.putheader("content-length", str(len(BODY)))
        connection.endheaders(BODY)
        response = connection.getresponse()
        return raw.RawResponse(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()


def assert_refused(response: raw.RawResponse) -> None:
    assert response.status == 403, response.body
    assert response.json()["error"]["code"] == "address_not_allowed"


def test_cidrs_claim_refuses_other_addresses(direct: Stack) -> None:
    assert_refused(post(direct, token(direct, cidrs=["10.0.0.0/8"])))
    assert post(direct, token(direct, cidrs=["10.0.0.0/8", "127.0.0.1/32"])).status == 200
    assert post(direct, token(direct, cidrs=["127.0.0.1"])).status == 200  # a single host
    assert post(direct, token(direct)).status == 200  # no claim: any address


def test_forwarded_for_is_ignored_without_trusted_proxies(direct: Stack) -> None:
    bound = token(direct, cidrs=["10.0.0.0/8"])
    assert_refused(post(direct, bound, ["10.1.2.3"]))
    assert_refused(post(direct, token(direct, "netco"), ["10.1.2.3"]))


def test_tenant_cidrs_from_config(direct: Stack) -> None:
    assert_refused(post(direct, token(direct, "netco")))
    assert post(direct, token(direct, "loopco")).status == 200
    # Both lists apply: the claim cannot widen the operator's list, only narrow it.
    assert_refused(post(direct, token(direct, "loopco", cidrs=["10.0.0.0/8"])))


@pytest.mark.parametrize(
    "cidrs",
    [
        "10.0.0.0/8",  # not a list
        [],  # would allow nothing: malformed, not "anywhere"
        ["10.0.0.1/8"],  # host bits set
        ["10.0.0.0/33"],
        ["not-an-address"],
        [" 10.0.0.0/8"],
        ["fe80::/64%eth0"],
        [10],
        ["127.0.0.1/32"] * 65,  # over the 64-entry cap
    ],
)
def test_malformed_cidrs_claim_is_a_401(direct: Stack, cidrs: object) -> None:
    response = post(direct, token(direct, cidrs=cidrs))
    assert response.status == 401, response.body
    assert "cidrs" in response.json()["error"]["message"]


def test_trusted_proxy_forwarded_address_is_used(proxied: Stack) -> None:
    bound = token(proxied, cidrs=["10.0.0.0/8"])
    assert post(proxied, bound, ["10.1.2.3"]).status == 200
    assert_refused(post(proxied, bound))  # no header: the proxy itself is the client
    assert_refused(post(proxied, bound, ["192.0.2.7"]))
    # A client-written entry to the left of the proxy's is never believed.
    assert_refused(post(proxied, bound, ["10.1.2.3, 192.0.2.7"]))
    # Trusted hops are skipped right to left, across repeated headers.
    assert post(proxied, bound, ["10.1.2.3, 127.0.0.1"]).status == 200
    assert post(proxied, bound, ["10.1.2.3", "127.0.0.1"]).status == 200
    assert_refused(post(proxied, bound, ["10.1.2.3, garbage"]))  # unknown: fail closed
    assert post(proxied, token(proxied, "netco"), ["172.16.0.1, 10.9.9.9"]).status == 200


@pytest.mark.parametrize(
    "raw,key",
    [
        ({"auth": {"tenant_cidrs": {"t": ["10.0.0.1/8"]}}}, r"auth\.tenant_cidrs\.t\[0\]"),
        ({"auth": {"tenant_cidrs": {"t": []}}}, r"auth\.tenant_cidrs\.t"),
        ({"auth": {"tenant_cidrs": ["10.0.0.0/8"]}}, r"auth\.tenant_cidrs"),
        ({"edge": {"trusted_proxies": ["proxy.internal"]}}, r"edge\.trusted_proxies\[0\]"),
        ({"auth": {"revocation_url": "file:///etc/passwd"}}, r"auth\.revocation_url"),
    ],
)
def test_bad_settings_fail_at_start_up_naming_the_key(raw: dict[str, Any], key: str) -> None:
    from shared.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=key):
        parse_config({"providers": {"m": {"kind": "mock"}}, **raw}, "test", {})


def test_trusted_proxies_from_one_variable() -> None:
    from shared.config import parse_config

    raw = {"providers": {"m": {"kind": "mock"}}, "edge": {"trusted_proxies": "${PROXIES}"}}
    config = parse_config(raw, "test", {"PROXIES": "127.0.0.1/32, ::1/128"})
    assert [str(n) for n in config.edge.trusted_proxies] == ["127.0.0.1/32", "::1/128"]
