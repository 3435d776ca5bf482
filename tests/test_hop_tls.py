"""TLS from the edge to its core pool (finding 5): https:// pool URLs, a CA bundle and an mTLS
client certificate, against a real core served by uvicorn over TLS with certificates made here.
A core the edge cannot verify (or that refuses the edge's certificate) is a 502
core_unavailable, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.core_tls import core_tls_context
from shared.config import ConfigError, parse_config
from tests.support import raw
from tests.support.net import free_port
from tests.support.stack import Stack
from tests.support.tls_certs import Pki, issue_pki

CHAT = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return issue_pki(tmp_path_factory.mktemp("pki"))


def tls_stack(workdir: Path, pki: Pki, edge_tls: dict[str, str], mtls: bool) -> Stack:
    port = free_port()
    server = {"tls_key_file": str(pki.key), "tls_cert_file": str(pki.cert)}
    if mtls:  # the core accepts only clients with a certificate from the CA (CERT_REQUIRED)
        server["tls_client_ca_file"] = str(pki.ca)
    edge = {"pools": {"default": [f"https://127.0.0.1:{port}"]}, **edge_tls}
    return Stack(workdir, {"edge": edge, "core": {"server": server}}, core_port=port).start()


@pytest.fixture(scope="module")
def mtls_stack(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Stack]:
    edge_tls = {
        "core_ca_file": str(pki.ca),
        "core_client_cert": str(pki.client_cert),
        "core_client_key": str(pki.client_key),
    }
    stack = tls_stack(tmp_path_factory.mktemp("mtls"), pki, edge_tls, mtls=True)
    yield stack
    stack.stop()


def test_requests_reach_a_tls_core_with_mutual_tls(mtls_stack: Stack) -> None:
    token = mtls_stack.token()
    response = raw.post(f"{mtls_stack.edge_url}/v1/chat/completions", CHAT, token)
    assert response.status == 200, response.body
    assert response.json()["choices"][0]["message"]["content"]
    listed = raw.request(
        "GET", f"{mtls_stack.edge_url}/v1/models", headers={"authorization": f"Bearer {token}"}
    )
    assert listed.status == 200


def assert_core_unavailable(stack: Stack) -> None:
    response = raw.post(f"{stack.edge_url}/v1/chat/completions", CHAT, stack.token())
    assert response.status == 502, response.body
    assert response.json()["error"]["code"] == "core_unavailable"
    assert "127.0.0.1" not in response.body.decode()


def test_a_core_the_edge_cannot_verify_is_core_unavailable(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki
) -> None:
    """No core_ca_file: the system CAs do not know the test CA."""
    stack = tls_stack(tmp_path_factory.mktemp("no-ca"), pki, {}, mtls=False)
    try:
        assert_core_unavailable(stack)
    finally:
        stack.stop()


def test_a_core_requiring_a_client_certificate_refuses_an_edge_without_one(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki
) -> None:
    stack = tls_stack(
        tmp_path_factory.mktemp("no-client-cert"), pki, {"core_ca_file": str(pki.ca)}, mtls=True
    )
    try:
        assert_core_unavailable(stack)
    finally:
        stack.stop()


def _edge_config(tmp_path: Path, edge: dict[str, object]) -> ConfigError | None:
    raw_config = {"providers": {"m": {"kind": "mock"}}, "hop": {"secret": "s" * 40}, "edge": edge}
    try:
        core_tls_context(parse_config(raw_config, "test", {}).edge)
    except ConfigError as error:
        return error
    return None


def test_tls_settings_are_checked_at_start_up(tmp_path: Path, pki: Pki) -> None:
    missing = str(tmp_path / "missing.pem")
    assert "core_ca_file" in str(_edge_config(tmp_path, {"core_ca_file": missing}))
    half = {"core_client_cert": str(pki.client_cert)}
    assert "core_client_key" in str(_edge_config(tmp_path, half))
    wrong = {"core_client_cert": str(pki.client_cert), "core_client_key": str(pki.key)}
    assert "core_client_cert" in str(_edge_config(tmp_path, wrong))
    assert _edge_config(tmp_path, {"core_ca_file": str(pki.ca)}) is None
