"""Secret references: parsing, masking, stable identity, rotation state, independent refresh,
the hop key mid-rotation, key pools reading the current value, and start-up failures against
a local Secrets Manager (moto in server mode) that name the reference and never a value."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
import yaml

from core.providers.adapters.base import ProviderError, Target
from core.providers.adapters.bedrock.options import BedrockOptions
from core.providers.adapters.bedrock.signing import StaticCredentials
from core.providers.adapters.openai_compat import ADAPTER as OPENAI
from core.providers.scrub import sanitize
from core.resilience.key_pools import KeyLease, KeyPool, key_id
from core.startup import no_session, prepare_core
from edge.secrets import EdgeSecrets
from shared import hop
from shared.config import ProviderConfig, parse_config
from shared.config_edge import parse_edge_config
from shared.configparse import ConfigError
from shared.errors import FailureClass
from shared.secret import Secret, SecretRef
from shared.secret_refresh import SecretRefresher, live_ages
from shared.secret_sources import PENDING, SecretError, as_secret
from tests.support.moto_server import MotoServer
from tests.support.net import free_port
from tests.support.providers import provider_of

ROOT = Path(__file__).resolve().parents[1]


class Stub:
    """A SecretSource whose values a test sets; `gate` (when set) holds reads until opened."""

    def __init__(self, values: dict[str, str], gate: threading.Event | None = None) -> None:
        self.values = values
        self.pending: dict[str, str] = {}
        self.gate = gate
        self.reads: Counter[str] = Counter()

    def read(self, reference: str, stage: str) -> str | None:
        if self.gate is not None:
            self.gate.wait(10)
        self.reads[reference] += 1
        if stage == PENDING:
            return self.pending.get(reference)
        if reference not in self.values:
            raise SecretError(f"{reference}: no such secret")
        return self.values[reference]


def ref(source: Stub, reference: str, setting: str = "s", pending: bool = False) -> SecretRef:
    return SecretRef(reference, setting, source, pending)


def test_references_parse_and_malformed_ones_fail_naming_the_setting() -> None:
    assert type(as_secret("sk-literal", "p.api_key")) is Secret
    parsed = as_secret("aws-sm://prod/openai#key", "p.api_key")
    assert isinstance(parsed, SecretRef)
    assert parsed.reference == "aws-sm://prod/openai#key" and parsed.setting == "p.api_key"
    for bad in ("aws-sm://", "aws-sm://x#", "aws-sm://a b"):
        with pytest.raises(ConfigError, match=r"^p\.api_key: expected aws-sm://"):
            as_secret(bad, "p.api_key")
    with pytest.raises(ConfigError, match="vault:// references are not supported yet"):
        as_secret("vault://kv/openai#key", "p.api_key")


def test_a_reference_is_masked_and_refuses_use_before_it_is_read() -> None:
    secret = ref(Stub({}), "aws-sm://prod/key")
    with pytest.raises(RuntimeError, match=r"^s: aws-sm://prod/key was used before it was read"):
        secret.reveal()
    secret.update("sk-live-value-123", None, 10)
    config = ProviderConfig("p", "openai", None, (secret,), {}, None, False)
    for text in (repr(secret), str(secret), f"{secret}", repr(config), repr([secret])):
        assert "sk-live" not in text
        assert "********" in text


def test_a_referenced_key_keeps_its_id_and_wakes_from_rest_when_rotated() -> None:
    secret = ref(Stub({}), "aws-sm://prod/key")
    secret.update("sk-one", None, 10)
    literal = Secret("sk-two")
    ident = key_id(secret)
    pool = KeyPool(ProviderConfig("p", "openai", None, (secret, literal), {}, None, False))
    refused = ProviderError(401, "bad key", FailureClass.AUTH)
    pool.rest(secret, refused, now=100.0)
    assert pool.rotation(100.0) == [literal]
    assert secret.update("sk-three", None, 10) is True
    assert key_id(secret) == ident  # metrics and ledger see the same key across rotations
    assert secret in pool.rotation(100.0)  # the new value is not the one that was refused
    assert pool.rotation(100.0)[0].reveal() in ("sk-three", "sk-two")
    assert key_id(literal) == key_id(Secret("sk-two"))  # a literal's id is as it always was


def test_accepted_values_cover_a_rotation_and_the_replaced_value_for_its_grace() -> None:
    secret = ref(Stub({}), "aws-sm://hop", pending=True)
    secret.update("a" * 40, None, 0.2)
    assert secret.accepted() == ("a" * 40,)
    secret.update("a" * 40, "b" * 40, 0.2)
    assert secret.accepted() == ("a" * 40, "b" * 40)
    secret.update("b" * 40, None, 0.2)
    assert secret.accepted() == ("b" * 40, "a" * 40)
    time.sleep(0.25)
    assert secret.accepted() == ("b" * 40,)


def test_the_hop_key_signs_with_the_current_value_and_verifies_every_accepted_one() -> None:
    source = Stub({})
    secret = ref(source, "aws-sm://hop", pending=True)
    secret.update("a" * 40, "b" * 40, 10)
    verifier = hop.HopKey(secret)
    old_edge, new_edge = hop.HopKey(b"a" * 40), hop.HopKey(b"b" * 40)
    identity = hop.HopIdentity("acme", "t", "*", int(time.time()) + 60)
    for edge in (old_edge, new_edge, hop.HopKey(secret)):
        credential = hop.sign(edge, identity, "POST", "/p", "r1", b"{}")
        assert hop.authenticate(verifier, credential, "POST", "/p", "r1") is not None
    stranger = hop.sign(hop.HopKey(b"c" * 40), identity, "POST", "/p", "r1", b"{}")
    assert hop.authenticate(verifier, stranger, "POST", "/p", "r1") is None
    assert hop.HopKey(secret).mac("POST", "/p", "r1", b"x") == old_edge.mac(
        "POST", "/p", "r1", b"x"
    )


def test_start_up_reads_every_reference_and_names_each_that_failed() -> None:
    source = Stub({"aws-sm://a": "sk-value-a"})
    good, missing = ref(source, "aws-sm://a", "x.a"), ref(source, "aws-sm://gone", "x.b")
    refresher = SecretRefresher([good, missing], refresh_s=0)
    with pytest.raises(ConfigError) as raised:
        refresher.resolve_now()
    assert str(raised.value) == "x.b: aws-sm://gone: no such secret"
    assert good.reveal() == "sk-value-a"


def test_a_slow_secret_never_delays_another_ones_refresh() -> None:
    asyncio.run(_slow_and_fast())


async def _slow_and_fast() -> None:
    gate = threading.Event()
    slow_source, fast_source = Stub({"aws-sm://slow": "v1"}), Stub({"aws-sm://fast": "w1"})
    slow, fast = ref(slow_source, "aws-sm://slow", "slow"), ref(fast_source, "aws-sm://fast")
    refresher = SecretRefresher([slow, fast], refresh_s=0.05)
    refresher.resolve_now()
    slow_source.gate = gate  # from now on every read of the slow secret hangs
    refresher.start()
    try:
        fast_source.values["aws-sm://fast"] = "w2"
        started = time.monotonic()
        while fast.reveal() != "w2":
            assert time.monotonic() - started < 2, "the fast secret waited for the slow one"
            await asyncio.sleep(0.01)
        before = fast_source.reads["aws-sm://fast"]
        await asyncio.sleep(0.5)
        assert fast_source.reads["aws-sm://fast"] >= before + 3  # it keeps its own pace
        assert slow_source.reads["aws-sm://slow"] == 1  # still stuck in its first refresh
        # The event loop is never blocked: this coroutine kept running all along.
        assert {setting for setting, *_ in live_ages()} >= {"slow", "s"}
    finally:
        gate.set()
        await refresher.stop()


def test_a_reread_joins_the_one_in_flight_and_reports_a_change() -> None:
    asyncio.run(_joined())


async def _joined() -> None:
    gate = threading.Event()
    source = Stub({"aws-sm://k": "v1"})
    secret = ref(source, "aws-sm://k")
    refresher = SecretRefresher([secret], refresh_s=0)
    refresher.resolve_now()
    source.values["aws-sm://k"], source.gate = "v2", gate
    first = asyncio.ensure_future(secret.reread())
    second = asyncio.ensure_future(secret.reread())
    await asyncio.sleep(0.05)
    gate.set()
    assert await first is True and await second is True
    assert source.reads["aws-sm://k"] == 2  # start-up, then one read for both callers
    assert await secret.reread() is False
    await refresher.stop()


def _core_exits(
    tmp_path: Path, moto: MotoServer, api_key: str, hop_secret: str, tier: str = "core"
) -> str:
    """Starts a real core (or edge) with `api_key`; asserts it refuses to start; its stderr."""
    path = tmp_path / "interlock.yaml"
    raw = {
        "state_dir": str(tmp_path / "state"),
        "providers": {
            "p": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": api_key}
        },
        "models": {"m": {"provider": "p", "model": "m"}},
    }
    path.write_text(yaml.safe_dump(raw))
    env = {**moto.env, "INTERLOCK_CONFIG": str(path), "INTERLOCK_HOP_SECRET": hop_secret}
    env["PYTHONPATH"], env["PATH"] = str(ROOT), "/usr/bin:/bin"
    argv = [sys.executable, "-m", "shared.server", tier, "--port", str(free_port())]
    argv += ["--admin-port", str(free_port())] if tier == "core" else []
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    return done.stderr


def test_a_missing_or_malformed_secret_fails_start_up_naming_the_reference(
    tmp_path: Path, moto: MotoServer
) -> None:
    client = moto.client()
    client.create_secret(Name="startup-text", SecretString="sk-plain-value-1")
    client.create_secret(Name="startup-json", SecretString='{"other": "sk-json-value-2"}')
    hop_ok = "h" * 40
    cases = {
        "aws-sm://startup-missing": "aws-sm://startup-missing: Secrets Manager refused "
        "(ResourceNotFoundException)",
        "aws-sm://startup-text#key": "the secret is not JSON",
        "aws-sm://startup-json#key": "the secret's JSON has no field 'key'",
    }
    for reference, why in cases.items():
        err = _core_exits(tmp_path, moto, reference, hop_ok)
        assert err.startswith(f"interlock: providers.p.api_key: {reference}"), err
        assert why in err
        assert "sk-plain-value-1" not in err and "sk-json-value-2" not in err
    client.create_secret(Name="startup-short-hop", SecretString="short-hop-value")
    err = _core_exits(tmp_path, moto, "sk-x", "aws-sm://startup-short-hop")
    assert err.strip() == "interlock: hop.secret: must be at least 32 characters"
    err = _core_exits(tmp_path, moto, "sk-x", "aws-sm://startup-missing", tier="edge")
    assert err.startswith("interlock: hop.secret: aws-sm://startup-missing: "), err


def test_bedrock_static_keys_may_be_references_read_at_start_up_and_rotated(
    tmp_path: Path, moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in moto.env.items():
        monkeypatch.setenv(name, value)
    pair = {"access_key_id": "AKIDROTATE1", "secret_access_key": "bedrock-secret-1"}
    moto.client().create_secret(Name="bedrock-keys", SecretString=orjson.dumps(pair).decode())
    options = {k: f"aws-sm://bedrock-keys#{k}" for k in pair} | {"region": "us-east-1"}
    raw = {
        "state_dir": str(tmp_path),
        "hop": {"secret": "h" * 40},
        "providers": {"aws": {"kind": "bedrock", "options": options}},
        "models": {"m": {"provider": "aws", "model": "anthropic.claude-3-haiku"}},
    }
    parts = prepare_core(parse_config(raw, "test", {}), no_session)
    settings = parts.providers["aws"].settings
    assert isinstance(settings, BedrockOptions) and settings.access_key_id is not None
    assert {r.setting for r in parts.secrets.refs} == {
        "providers.aws.options.access_key_id",
        "providers.aws.options.secret_access_key",
    }
    credentials = StaticCredentials(settings.access_key_id, settings.secret_access_key, None)
    assert asyncio.run(credentials.get()).access_key == "AKIDROTATE1"
    for secret, value in zip(parts.secrets.refs, ("AKIDROTATE2", "bedrock-secret-2"), strict=True):
        assert isinstance(secret, SecretRef)
        secret.update(value, None, 1)
    frozen = asyncio.run(credentials.get())
    assert (frozen.access_key, frozen.secret_key) == ("AKIDROTATE2", "bedrock-secret-2")


def test_a_watched_secret_hands_each_new_value_on_and_a_bad_one_fails_its_refresh() -> None:
    async def scenario() -> None:
        source = Stub({"aws-sm://jwks": "doc-1"})
        secret = ref(source, "aws-sm://jwks", "auth.jwks")
        refresher = SecretRefresher([secret], refresh_s=0)
        refresher.resolve_now()
        applied: list[str] = []

        def apply(text: str) -> None:
            if text == "not-a-jwks":
                raise ConfigError("auth.jwks: not valid JSON")
            applied.append(text)

        refresher.watch(secret, apply)
        assert await secret.reread() is False and applied == []
        source.values["aws-sm://jwks"] = "doc-2"
        assert await secret.reread() is True and applied == ["doc-2"]
        source.values["aws-sm://jwks"] = "not-a-jwks"
        with pytest.raises(ConfigError):
            await refresher.reread(secret)
        assert applied == ["doc-2"]
        await refresher.stop()

    asyncio.run(scenario())


def test_a_refused_key_is_worth_one_more_try_only_when_its_value_moved_on() -> None:
    source = Stub({"aws-sm://k": "v1"})
    secret = ref(source, "aws-sm://k")
    refresher = SecretRefresher([secret], refresh_s=0)
    refresher.resolve_now()
    pool = KeyPool(ProviderConfig("p", "openai", None, (secret,), {}, None, False))
    sent_v1 = KeyLease(key=secret)
    source.values["aws-sm://k"] = "v2"  # rotated, and read by a background refresh
    secret.update("v2", None, 1)  # between the send and the 401
    assert asyncio.run(pool.reread(sent_v1)) is True
    assert source.reads["aws-sm://k"] == 1  # no read needed: the value already moved on
    assert asyncio.run(pool.reread(KeyLease(key=secret))) is False  # read: v2 still
    assert source.reads["aws-sm://k"] == 2
    source.values.pop("aws-sm://k")  # a failing read is no reason to retry
    assert asyncio.run(pool.reread(KeyLease(key=secret))) is False
    assert asyncio.run(pool.reread(KeyLease(key=Secret("sk-literal")))) is False


def test_an_upstream_error_quoting_the_key_just_rotated_out_is_logged_without_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = ref(Stub({}), "aws-sm://prod/key", "providers.up.api_key")
    secret.update("operator-key-old-1", None, 60)
    secret.update("operator-key-new-2", None, 60)  # rotated; the old one may still be echoed
    provider = ProviderConfig("up", "openai", None, (secret,), {}, None, False)
    target = Target(provider_of(provider), "m", secret)
    body = orjson.dumps({"error": {"message": "operator-key-old-1 / operator-key-new-2 bad"}})
    error = OPENAI.parse_error(400, {}, body)  # a client error: its scrubbed text is shown
    with caplog.at_level(logging.WARNING, logger="interlock.upstream"):
        sanitize(error, target)
    logged = " ".join(record.getMessage() for record in caplog.records) + error.message
    assert "operator-key-old-1" not in logged and "operator-key-new-2" not in logged
    assert f"[key {key_id(secret)}]" in logged


def test_a_thawed_edge_reads_a_stale_hop_secret_before_it_signs(
    tmp_path: Path, moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Lambda environment frozen through a whole rotation: its timer never ran (the
    refresher is not started here), so the first request reads the secret before signing."""
    for name, value in moto.env.items():
        monkeypatch.setenv(name, value)
    client = moto.client()
    client.create_secret(Name="thawed-hop", SecretString="o" * 40)
    raw = {"state_dir": str(tmp_path), "hop": {"secret": "aws-sm://thawed-hop"}}
    secrets = EdgeSecrets(parse_edge_config({**raw, "secrets": {"refresh": "1s"}}, "t", {}))
    client.put_secret_value(SecretId="thawed-hop", SecretString="n" * 40)
    signer = hop.HopKey(secrets.hop_secret)
    asyncio.run(secrets.fresh())
    assert signer.mac("POST", "/p", "r", b"") == hop.HopKey(b"o" * 40).mac("POST", "/p", "r", b"")
    time.sleep(1.6)  # past 1.5 refresh intervals unread
    asyncio.run(secrets.fresh())
    assert signer.mac("POST", "/p", "r", b"") == hop.HopKey(b"n" * 40).mac("POST", "/p", "r", b"")
