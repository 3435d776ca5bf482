"""Provider keys and the hop secret from Secrets Manager (moto in server mode), rotated under a
running edge + core: no request fails, the key switch is seen within the refresh interval and
at once after a 401, the hop accepts the pending value mid-rotation, and no value is logged."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest

from tests.support import hop_client, sdk
from tests.support.fake_openai import FakeOpenAI
from tests.support.moto_server import MotoServer
from tests.support.prom import Samples, scrape
from tests.support.stack import Stack

REFRESH_S = 1.0
HOP_OLD, HOP_PENDING, HOP_STRANGER = ("h" * 40, "p" * 40, "x" * 40)


def _name(prefix: str) -> str:
    return f"{prefix}-{os.urandom(4).hex()}"


def _authorizations(fake: FakeOpenAI, model: str) -> list[str]:
    return [
        next(v for k, v in r.headers.items() if k.lower() == "authorization")
        for r in fake.for_model(model)
    ]


@dataclass
class Secrets:
    """The module's secrets in Secrets Manager, and what a stack needs to read them."""

    tmp: pytest.TempPathFactory
    moto: MotoServer
    fake: FakeOpenAI
    names: dict[str, str]

    def stack(self, key: str, refresh: str, jwks: bool = False) -> Stack:
        """An edge + core whose provider key (secret `key`) and hop secret are references;
        with `jwks`, the edge's public keys too (the JWKS file is removed before start, so the
        reference is the only source)."""
        overrides: dict[str, Any] = {
            "providers": {
                "fake": {
                    "kind": "openai",
                    "base_url": self.fake.base_url,
                    "api_key": f"aws-sm://{key}",
                    "allow_any_model": True,
                }
            },
            "models": {"gpt-fake": {"provider": "fake", "model": "gpt-fake"}},
            "secrets": {"refresh": refresh},
        }
        if jwks:
            overrides["auth"] = {"jwks": f"aws-sm://{self.names['jwks']}"}
        stack = Stack(self.tmp.mktemp("stack"), overrides)
        if jwks:
            jwks_file = stack.config.auth.jwks_file
            self.moto.client().create_secret(
                Name=self.names["jwks"], SecretString=jwks_file.read_text()
            )
            jwks_file.unlink()
        stack.env.update(self.moto.env)
        stack.env["INTERLOCK_HOP_SECRET"] = f"aws-sm://{self.names['hop']}"
        return stack.start()


@pytest.fixture(scope="module")
def secrets(
    tmp_path_factory: pytest.TempPathFactory, moto: MotoServer, fake: FakeOpenAI
) -> Secrets:
    names = {k: _name(k) for k in ("key", "hop", "slow_key", "jwks")}
    client = moto.client()
    client.create_secret(Name=names["key"], SecretString='{"key": "sk-rot-1"}')
    client.create_secret(Name=names["slow_key"], SecretString="sk-rot-a")
    client.create_secret(Name=names["hop"], SecretString=HOP_OLD)
    return Secrets(tmp_path_factory, moto, fake, names)


@pytest.fixture(scope="module")
def names(secrets: Secrets) -> dict[str, str]:
    return secrets.names


@pytest.fixture(scope="module")
def rotating(secrets: Secrets) -> Iterator[Stack]:
    """A stack whose provider key (a JSON field), hop secret and the edge's public keys come
    from Secrets Manager, refreshed every second."""
    stack = secrets.stack(secrets.names["key"] + "#key", "1s", jwks=True)
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def unrefreshed(secrets: Secrets) -> Iterator[Stack]:
    """A stack that never refreshes on a timer: only a 401 makes it read its key again."""
    stack = secrets.stack(secrets.names["slow_key"], "0")
    yield stack
    stack.stop()


def test_a_key_rotated_under_load_is_used_within_the_refresh_interval(
    rotating: Stack, moto: MotoServer, fake: FakeOpenAI, names: dict[str, str]
) -> None:
    client = sdk.client(rotating)
    failures: list[BaseException] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                client.chat.completions.create(
                    model="gpt-fake", messages=[{"role": "user", "content": "hi"}]
                )
            except Exception as exc:  # every one is a failed request: the test fails
                failures.append(exc)

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(1.0)
        assert _authorizations(fake, "gpt-fake")[-1] == "Bearer sk-rot-1"
        moto.client().put_secret_value(SecretId=names["key"], SecretString='{"key": "sk-rot-2"}')
        rotated_at = time.monotonic()
        seen = len(_authorizations(fake, "gpt-fake"))
        while "Bearer sk-rot-2" not in _authorizations(fake, "gpt-fake")[seen:]:
            assert time.monotonic() - rotated_at < REFRESH_S + 2.0, "key not switched in time"
            time.sleep(0.02)
        switched_after = time.monotonic() - rotated_at
        time.sleep(0.5)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert not failures, failures[:3]
    after = _authorizations(fake, "gpt-fake")
    # Once switched, never back: the last requests all carried the new key.
    assert set(after[-5:]) == {"Bearer sk-rot-2"}
    assert switched_after <= REFRESH_S + 2.0


def test_a_key_the_upstream_refuses_is_read_again_at_once(
    unrefreshed: Stack, moto: MotoServer, fake: FakeOpenAI, names: dict[str, str]
) -> None:
    client = sdk.client(unrefreshed)
    # keyed/* answers 401 to every key but sk-good: the secret is rotated to it meanwhile.
    moto.client().put_secret_value(SecretId=names["slow_key"], SecretString="sk-good")
    started = time.monotonic()
    answer = client.chat.completions.create(
        model="fake/keyed/rotated", messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.choices[0].message.content
    assert time.monotonic() - started < 5  # no timer: this stack never refreshes by itself
    assert _authorizations(fake, "keyed/rotated") == ["Bearer sk-rot-a", "Bearer sk-good"]
    # fail-401 refuses every key: one re-read, one more try with the new value, no loop.
    moto.client().put_secret_value(SecretId=names["slow_key"], SecretString="sk-bad-1")
    for tries in (["Bearer sk-good", "Bearer sk-bad-1"], ["Bearer sk-bad-1"]):
        fake.reset()
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(
                model="fake/fail-401", messages=[{"role": "user", "content": "hi"}]
            )
        assert _authorizations(fake, "fail-401") == tries  # unchanged value: no second try


def _accepted(stack: Stack, secret: str) -> bool:
    body = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]}
    return hop_client.post(stack.core_url, secret, body).status == 200


def _until(predicate: Any, timeout: float = REFRESH_S + 4.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not within the refresh interval"
        time.sleep(0.1)


def test_the_hop_secret_rotates_with_the_pending_value_accepted(
    rotating: Stack, moto: MotoServer, names: dict[str, str]
) -> None:
    client, hop = moto.client(), names["hop"]
    assert _accepted(rotating, HOP_OLD)
    assert not _accepted(rotating, HOP_PENDING)
    # Rotation step 1 (createSecret): the new value is staged AWSPENDING.
    client.put_secret_value(SecretId=hop, SecretString=HOP_PENDING, VersionStages=["AWSPENDING"])
    _until(lambda: _accepted(rotating, HOP_PENDING))
    assert _accepted(rotating, HOP_OLD)  # the edge still signs with the current value
    assert not _accepted(rotating, HOP_STRANGER)
    # Step 4 (finishSecret): the pending version becomes AWSCURRENT.
    versions = client.list_secret_version_ids(SecretId=hop)["Versions"]
    stages = {v["VersionId"]: v.get("VersionStages", []) for v in versions}
    new = next(v for v, s in stages.items() if "AWSPENDING" in s)
    old = next(v for v, s in stages.items() if "AWSCURRENT" in s)
    client.update_secret_version_stage(
        SecretId=hop, VersionStage="AWSCURRENT", MoveToVersionId=new, RemoveFromVersionId=old
    )
    client.update_secret_version_stage(
        SecretId=hop, VersionStage="AWSPENDING", RemoveFromVersionId=new
    )
    # Through the edge, requests keep passing while both tiers pick the new value up ...
    tenant = sdk.client(rotating)
    deadline = time.monotonic() + 3 * REFRESH_S + 2
    while time.monotonic() < deadline:
        tenant.chat.completions.create(
            model="gpt-fake", messages=[{"role": "user", "content": "x"}]
        )
    assert _accepted(rotating, HOP_PENDING)
    # ... and the old value, kept for a grace of two refreshes, is refused after it.
    _until(lambda: not _accepted(rotating, HOP_OLD), timeout=4 * REFRESH_S + 4)


def test_secret_ages_are_on_metrics_and_no_value_is_logged(rotating: Stack) -> None:
    found = scrape(rotating.core_admin_url)
    ages = by_setting(found, "interlock_secret_refresh_age_seconds")
    assert set(ages) == {"hop.secret", "providers.fake.api_key"}
    assert all(0 <= age < REFRESH_S + 2 for age in ages.values())
    assert "providers.fake.api_key" in by_setting(found, "interlock_secret_value_age_seconds")
    logs = rotating.read_logs()
    assert "changed" in logs  # the rotations were logged, by setting and reference
    for value in ("sk-rot-1", "sk-rot-2", HOP_OLD, HOP_PENDING):
        assert value not in logs


def by_setting(found: Samples, name: str) -> dict[str, float]:
    return {dict(labels)["setting"]: v for (sample, labels), v in found.items() if sample == name}
