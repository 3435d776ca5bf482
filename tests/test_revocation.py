"""Token revocation (issue 8): `interlock token revoke` writes the list, the real edge re-reads
it in the background and refuses revoked tokens, cached ones included, within one refresh."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jwt
import pytest
from aiohttp import web

from core.ops.cli import main
from tests.support import raw
from tests.support.fake_server import FakeServer
from tests.support.stack import Stack

BODY = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}
REFRESH_S = 0.2
# One refresh interval, plus a generous allowance for a loaded 2-core test machine.
BOUND_S = REFRESH_S + 3.0


def status(stack: Stack, token: str) -> tuple[int, str | None]:
    response = raw.post(f"{stack.edge_url}/v1/chat/completions", BODY, token)
    code = response.json()["error"]["code"] if response.status != 200 else None
    return response.status, code


def jti_of(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["jti"])


def poll(check: Callable[[], bool], timeout: float) -> float:
    """Seconds until `check` held; fails after `timeout`."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, "condition never became true"
        time.sleep(0.02)
    return time.monotonic() - started


def cli(stack: Stack, *args: str) -> int:
    return main(["--config", str(stack.config_path), *args])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    overrides = {"auth": {"revocation_refresh": f"{int(REFRESH_S * 1000)}ms"}}
    running = Stack(Path(tmp_path_factory.mktemp("revocation")), overrides).start()
    yield running
    running.stop()


def test_revoked_jti_stops_a_cached_token_within_one_refresh(stack: Stack) -> None:
    revoked, other = stack.token(), stack.token()
    neighbour = stack.token(tenant="someone-else")
    for token in (revoked, other, neighbour):
        assert status(stack, token) == (200, None)  # verified, now served from the cache
    assert cli(stack, "token", "revoke", "--jti", jti_of(revoked)) == 0
    elapsed = poll(lambda: status(stack, revoked) == (401, "token_revoked"), BOUND_S)
    assert elapsed <= BOUND_S
    assert status(stack, other) == (200, None)
    assert status(stack, neighbour) == (200, None)
    assert stack.config.auth.revocation_file.stat().st_mode & 0o777 == 0o600


def test_tenant_not_before_revokes_every_earlier_token(stack: Stack) -> None:
    first, second = stack.token(tenant="leaky"), stack.token(tenant="leaky")
    bystander = stack.token(tenant="bystander")
    assert status(stack, first) == (200, None)
    assert cli(stack, "token", "revoke", "--tenant", "leaky") == 0
    poll(lambda: status(stack, first) == (401, "token_revoked"), BOUND_S)
    assert status(stack, second) == (401, "token_revoked")  # never used, revoked all the same
    assert status(stack, bystander) == (200, None)
    # Tokens carry whole-second iat: the revocation covers the current second, so a token
    # issued once it has passed works again.
    not_before = json.loads(stack.config.auth.revocation_file.read_text())["tenants"]["leaky"]
    poll(lambda: time.time() >= not_before, 2.0)
    assert status(stack, stack.token(tenant="leaky")) == (200, None)


def test_a_broken_or_missing_file_keeps_the_last_good_list(stack: Stack) -> None:
    revoked, fine = stack.token(tenant="keeper"), stack.token(tenant="keeper")
    assert cli(stack, "token", "revoke", "--jti", jti_of(revoked)) == 0
    poll(lambda: status(stack, revoked)[0] == 401, BOUND_S)
    file = stack.config.auth.revocation_file
    good = file.read_text()
    try:
        file.write_text('{"version": 1, "jtis": {"x": "not a time"}}')
        stack.wait_for_log("revocation list refresh failed, keeping the current list")
        assert status(stack, revoked) == (401, "token_revoked")
        assert status(stack, fine) == (200, None)
        file.write_text("[" * 100_000 + "]" * 100_000)  # deep enough to exhaust recursion
        stack.wait_for_log("auth.revocation_file: not valid JSON")
        assert status(stack, revoked) == (401, "token_revoked")
        file.unlink()
        stack.wait_for_log("auth.revocation_file: cannot read (FileNotFoundError)")
        time.sleep(REFRESH_S * 3)  # several refreshes with the file gone
        assert status(stack, revoked) == (401, "token_revoked")
    finally:
        file.write_text(good)


def test_no_list_yet_is_not_a_refresh_failure(tmp_path: Path) -> None:
    """A fresh install has no revocation file (nothing is revoked): said once at start-up, and
    the refreshes stay quiet until a list appears, which is then read as usual."""
    running = Stack(tmp_path, {"auth": {"revocation_refresh": "100ms"}}).start()
    try:
        running.wait_for_log("no revocation list at")
        time.sleep(0.6)  # several refreshes with no file
        assert "revocation list refresh failed" not in running.read_logs()
        token = running.token(tenant="late")
        assert status(running, token) == (200, None)
        assert cli(running, "token", "revoke", "--jti", jti_of(token)) == 0
        poll(lambda: status(running, token)[0] == 401, BOUND_S)
    finally:
        running.stop()


def test_cli_refuses_to_overwrite_an_invalid_list(stack: Stack) -> None:
    file = stack.config.auth.revocation_file
    good = file.read_text() if file.exists() else '{"version": 1}\n'
    try:
        file.write_text("not json")
        assert cli(stack, "token", "revoke", "--jti", "abc") == 2
        assert file.read_text() == "not json"  # left for the operator to repair
    finally:
        file.write_text(good)
    assert cli(stack, "token", "revoke", "--tenant", "x", "--exp", "1") == 2
    assert cli(stack, "token", "revoke", "--jti", "a\nb") == 2
    assert cli(stack, "token", "revoke", "--tenant", "x", "--before", "2999-01-01") == 2


def test_explicit_revocation_file_must_exist_at_start_up(tmp_path: Path) -> None:
    """Fail closed: a configured list that is missing would re-admit every revoked token."""
    stack = Stack(tmp_path, {"auth": {"revocation_file": str(tmp_path / "nope.json")}})
    try:
        with pytest.raises(RuntimeError, match=r"auth\.revocation_file: .*nope\.json"):
            stack.start()
    finally:
        stack.stop()


def test_an_invalid_default_file_stops_start_up(tmp_path: Path) -> None:
    stack = Stack(tmp_path, {})
    stack.config.auth.revocation_file.write_text('{"version": 2}')
    try:
        with pytest.raises(RuntimeError, match=r"auth\.revocation_file: expected a revocation"):
            stack.start()
    finally:
        stack.stop()


class FakeList(FakeServer):
    def __init__(self) -> None:
        app = web.Application()
        app.router.add_get("/revocations.json", self.serve)
        super().__init__(app)
        self.document = b""
        self.status = 200

    async def serve(self, request: web.Request) -> web.Response:
        return web.Response(status=self.status, body=self.document, content_type="application/json")


def test_revocation_list_from_a_url(tmp_path: Path) -> None:
    server = FakeList().start()
    url = f"{server.url}/revocations.json"
    overrides = {"auth": {"revocation_url": url, "revocation_refresh": "100ms"}}
    try:
        server.status = 503
        down = Stack(tmp_path / "down", overrides)
        with pytest.raises(RuntimeError, match=r"auth\.revocation_url: HTTP 503"):
            down.start()  # no list, no service
        down.stop()
        server.status = 200
        server.document = b'{"version": 1}'
        stack = Stack(tmp_path / "up", overrides).start()
        try:
            token = stack.token()
            assert status(stack, token) == (200, None)
            listed = {"version": 1, "jtis": {jti_of(token): time.time() + 600}}
            server.document = json.dumps(listed).encode()
            poll(lambda: status(stack, token) == (401, "token_revoked"), BOUND_S)
            server.status = 500  # an outage keeps the list
            stack.wait_for_log("auth.revocation_url: HTTP 500")
            assert status(stack, token) == (401, "token_revoked")
        finally:
            stack.stop()
    finally:
        server.stop()


def test_list_parsing_is_strict_and_bounded() -> None:
    from shared.configparse import ConfigError
    from shared.revocation import MAX_JTIS, Revocations, parse_revocations

    good = parse_revocations('{"version": 1, "jtis": {"a": 10}, "tenants": {"t": 5}}', "f")
    assert good.revokes("t", "zzz", 4) and not good.revokes("t", "zzz", 5)
    assert good.revokes("other", "a", 0) and not good.revokes("other", "b", 0)
    for bad in (
        "[]",
        '{"version": 1, "extra": 1}',
        '{"version": 1, "jtis": {"a": true}}',
        '{"version": 1, "jtis": {"a": NaN}}',
        '{"version": 1, "tenants": {" padded": 1}}',
        '{"version": 1, "jtis": {"' + "j" * 257 + '": 1}}',
        json.dumps({"version": 1, "jtis": {str(i): 1 for i in range(MAX_JTIS + 1)}}),
    ):
        with pytest.raises(ConfigError):
            parse_revocations(bad, "f")
    # Entries go once no valid token can match: jti after exp + leeway, tenant after
    # not-before + max TTL + leeway.
    old = Revocations({"gone": 100.0, "kept": 200.0}, {"gone": 0.0, "kept": 100.0})
    pruned = old.pruned(now=150.0, max_ttl_s=40.0, leeway_s=10.0)
    assert pruned == Revocations({"kept": 200.0}, {"kept": 100.0})
