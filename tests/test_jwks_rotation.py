"""Signing-key rotation without restarts: the edge refreshes its JWKS (URL or file)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from core.ops.keys import init_keys, issue_token
from tests.support import raw
from tests.support.fake_server import FakeServer
from tests.support.stack import Stack

BODY = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}


class FakeJwks(FakeServer):
    def __init__(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/jwks.json", self.jwks)
        super().__init__(app)
        self.document = b""
        self.status = 200

    async def jwks(self, request: web.Request) -> web.Response:
        return web.Response(status=self.status, body=self.document, content_type="application/json")


def poll(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[FakeJwks]:
    server = FakeJwks().start()
    yield server
    server.stop()


def second_key(stack: Stack, directory: Path):  # type: ignore[no-untyped-def]
    auth = dataclasses.replace(
        stack.config.auth, signing_key_file=directory / "b.pem", jwks_file=directory / "b.json"
    )
    jwk = init_keys(auth)
    return auth, jwk


def status(stack: Stack, token: str) -> int:
    return raw.post(f"{stack.edge_url}/v1/chat/completions", BODY, token).status


def test_rotation_through_a_jwks_url(tmp_path: Path, jwks_server: FakeJwks) -> None:
    url = f"{jwks_server.url}/.well-known/jwks.json"
    stack = Stack(tmp_path / "stack", {"auth": {"jwks_url": url, "jwks_refresh": "100ms"}})
    key_a = json.loads(stack.config.auth.jwks_file.read_text())["keys"][0]
    jwks_server.document = json.dumps({"keys": [key_a]}).encode()
    stack.start()
    try:
        token_a = stack.token()
        assert status(stack, token_a) == 200
        auth_b, key_b = second_key(stack, tmp_path)
        token_b = issue_token(auth_b, "acme", 600)
        assert status(stack, token_b) == 401  # not published yet
        jwks_server.document = json.dumps({"keys": [key_a, key_b]}).encode()
        poll(lambda: status(stack, token_b) == 200)  # published: accepted without a restart
        jwks_server.status = 500
        stack.wait_for_log("JWKS refresh failed, keeping the current keys")  # a failed refresh...
        assert status(stack, token_a) == 200 and status(stack, token_b) == 200  # ...keeps the keys
        jwks_server.status = 200
        jwks_server.document = json.dumps({"keys": [key_b]}).encode()
        # Withdrawn: even the cached token signed with key A stops working.
        poll(lambda: status(stack, token_a) == 401)
        assert status(stack, token_b) == 200
    finally:
        stack.stop()


def test_rotation_through_the_jwks_file(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "stack", {"auth": {"jwks_refresh": "100ms"}}).start()
    try:
        auth_b, key_b = second_key(stack, tmp_path)
        token_b = issue_token(auth_b, "acme", 600)
        assert status(stack, token_b) == 401
        document = json.loads(stack.config.auth.jwks_file.read_text())
        document["keys"].append(key_b)
        stack.config.auth.jwks_file.write_text(json.dumps(document))
        poll(lambda: status(stack, token_b) == 200)
    finally:
        stack.stop()


def test_a_jwks_file_gone_after_start_up_is_a_refresh_failure(tmp_path: Path) -> None:
    """Unlike an optional list that never existed (tests/test_revocation.py), the key file the
    edge started with going missing is reported, and the keys it had stay in use."""
    stack = Stack(tmp_path / "stack", {"auth": {"jwks_refresh": "1s"}}).start()
    try:
        stack.config.auth.jwks_file.unlink()  # before the first refresh has read it
        token = stack.token()
        stack.wait_for_log("JWKS refresh failed, keeping the current keys")
        assert status(stack, token) == 200
    finally:
        stack.stop()


def test_an_unreachable_jwks_url_stops_start_up(tmp_path: Path, jwks_server: FakeJwks) -> None:
    jwks_server.status = 404
    stack = Stack(
        tmp_path / "stack", {"auth": {"jwks_url": f"{jwks_server.url}/.well-known/jwks.json"}}
    )
    try:
        with pytest.raises(RuntimeError, match=r"auth\.jwks_url: HTTP 404"):
            stack.start()
    finally:
        jwks_server.status = 200
        stack.stop()
