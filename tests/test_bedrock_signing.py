"""SigV4 signing, verified the way AWS does it, and credential resolution off the event loop."""

from __future__ import annotations

import asyncio
import datetime
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from botocore.credentials import ReadOnlyCredentials

from core.providers.adapters.base import ProviderError, Target, UpstreamRequest
from core.providers.adapters.bedrock import ADAPTER
from core.providers.adapters.bedrock import signing as signing_module
from core.providers.adapters.bedrock.signing import CredentialCache, SigV4Signer, StaticCredentials
from shared.config import ProviderConfig, parse_config
from shared.configparse import ConfigError
from shared.errors import FailureClass
from tests.support.fake_bedrock import ACCESS_KEY, SECRET_KEY, SESSION_TOKEN, verify_sigv4
from tests.support.providers import provider_of

KNOWN = {ACCESS_KEY: (SECRET_KEY, SESSION_TOKEN)}
OPTIONS = {
    "region": "us-east-1",
    "access_key_id": ACCESS_KEY,
    "secret_access_key": SECRET_KEY,
    "session_token": SESSION_TOKEN,
}
PROVIDER = ProviderConfig("aws", "bedrock", "http://127.0.0.1:9", (), {}, None, False, OPTIONS)
MESSAGES = [{"role": "user", "content": "hi"}]


def signed(provider: ProviderConfig = PROVIDER, model: str = "fake.text-v1:0") -> UpstreamRequest:
    signer = ADAPTER.make_signer(ADAPTER.check_provider(provider))
    assert signer is not None
    request = ADAPTER.build_request(
        {"messages": MESSAGES}, Target(provider_of(provider), model, None)
    )
    return asyncio.run(signer.sign(request))


class WireHeaders(dict[str, str]):
    """Headers as a server sees them: case-insensitive, with the Host the client sent."""

    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__({k.lower(): v for k, v in headers.items()})
        self["host"] = "127.0.0.1:9"

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


def verify(request: UpstreamRequest, **overrides: object) -> tuple[str, str] | None:
    path = str(overrides.pop("path", request.url.removeprefix("http://127.0.0.1:9")))
    body = overrides.pop("body", request.body)
    assert isinstance(body, bytes)
    return verify_sigv4("POST", path, WireHeaders(request.headers), body, KNOWN, **overrides)  # type: ignore[arg-type]


def test_signature_verifies_and_covers_token_and_scope() -> None:
    request = signed()
    assert verify(request) is None
    authorization = request.headers["Authorization"]
    assert authorization.startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    assert "/us-east-1/bedrock/aws4_request" in authorization
    assert request.headers["X-Amz-Security-Token"] == SESSION_TOKEN
    assert request.headers["content-type"] == "application/json"  # the built headers survive


def test_signature_covers_the_exact_body_and_path() -> None:
    request = signed()
    tampered = request.body.replace(b"hi", b"ho")
    assert verify(request, body=tampered) == (
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided.",
    )
    other_path = request.url.removeprefix("http://127.0.0.1:9").replace("text", "tekst")
    assert verify(request, path=other_path)[0] == "InvalidSignatureException"  # type: ignore[index]


def test_escaped_colon_in_the_model_id_is_signed_as_sent() -> None:
    """aiohttp sends ':' unescaped; signing the %3A form would be rejected by AWS."""
    request = signed(model="anthropic.claude-3-haiku-20240307-v1:0")
    path = "/model/anthropic.claude-3-haiku-20240307-v1:0/converse"
    assert request.url.endswith(path)
    assert verify(request, path=path) is None
    escaped = request.url.replace("v1:0", "v1%3A0")
    naive = asyncio.run(
        ADAPTER.make_signer(ADAPTER.check_provider(PROVIDER)).sign(replace(request, url=escaped))  # type: ignore[union-attr]
    )
    assert verify(naive, path=path)[0] == "InvalidSignatureException"  # type: ignore[index]


def test_wrong_secret_unknown_key_missing_token_and_expired() -> None:
    wrong = {**OPTIONS, "secret_access_key": "not-the-secret"}
    assert verify(signed(replace(PROVIDER, options=wrong)))[0] == "InvalidSignatureException"  # type: ignore[index]
    unknown = {**OPTIONS, "access_key_id": "AKIDUNKNOWN"}
    assert verify(signed(replace(PROVIDER, options=unknown)))[0] == "UnrecognizedClientException"  # type: ignore[index]
    no_token = {k: v for k, v in OPTIONS.items() if k != "session_token"}
    assert verify(signed(replace(PROVIDER, options=no_token)))[0] == "UnrecognizedClientException"  # type: ignore[index]
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=10)
    assert verify(signed(), now=later) == ("InvalidSignatureException", "Signature expired.")
    other_region = {**OPTIONS, "region": "eu-west-1"}
    assert verify(signed(replace(PROVIDER, options=other_region)))[0] == "InvalidSignatureException"  # type: ignore[index]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingResolver:
    def __init__(self, fail: bool = False) -> None:
        self.threads: list[int] = []
        self.fail = fail

    def __call__(self) -> ReadOnlyCredentials:
        self.threads.append(threading.get_ident())
        if self.fail:
            raise RuntimeError("imds unreachable")
        return ReadOnlyCredentials(ACCESS_KEY, SECRET_KEY, f"token-{len(self.threads)}")


def test_credentials_resolve_off_the_loop_once_and_refresh_before_expiry() -> None:
    resolver = CountingResolver()
    clock = Clock()

    async def scenario() -> list[str | None]:
        cache = CredentialCache(resolver, clock)
        loop_thread = threading.get_ident()
        tokens = [(await cache.get()).token, (await cache.get()).token]
        assert resolver.threads and loop_thread not in resolver.threads
        clock.now += signing_module.SOFT_REFRESH_S + 1
        tokens.append((await cache.get()).token)  # still the old one, refresh in background
        assert cache._refreshing is not None
        await cache._refreshing  # the background refresh, awaited rather than waited for
        tokens.append((await cache.get()).token)
        clock.now += signing_module.HARD_REFRESH_S + 1
        tokens.append((await cache.get()).token)  # too old to use: refreshed before returning
        return tokens

    assert asyncio.run(scenario()) == ["token-1", "token-1", "token-1", "token-2", "token-3"]
    assert len(resolver.threads) == 3


def test_failed_resolution_is_an_auth_failure_without_details() -> None:
    cache = CredentialCache(CountingResolver(fail=True))
    with pytest.raises(ProviderError) as info:
        asyncio.run(cache.get())
    assert info.value.failure_class is FailureClass.AUTH and info.value.status == 502
    assert "imds" not in info.value.message
    empty = CredentialCache(lambda: None)
    with pytest.raises(ProviderError):
        asyncio.run(empty.get())


@pytest.fixture
def isolated_aws_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[pytest.MonkeyPatch]:
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never reach for IMDS in tests
    yield monkeypatch


def test_default_chain_signs_with_environment_credentials(
    isolated_aws_env: pytest.MonkeyPatch,
) -> None:
    isolated_aws_env.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    isolated_aws_env.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    isolated_aws_env.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    provider = replace(PROVIDER, options={"region": "us-east-1"})
    assert verify(signed(provider)) is None


def test_default_chain_without_credentials_is_an_auth_failure(
    isolated_aws_env: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ProviderError) as info:
        signed(replace(PROVIDER, options={"region": "us-east-1"}))
    assert info.value.failure_class is FailureClass.AUTH


def test_static_credentials_need_no_thread() -> None:
    signer = SigV4Signer("us-east-1", StaticCredentials(ACCESS_KEY, SECRET_KEY, None))
    request = ADAPTER.build_request(
        {"messages": MESSAGES}, Target(provider_of(PROVIDER), "m.x-v1:0", None)
    )
    result = asyncio.run(signer.sign(request))
    assert "X-Amz-Security-Token" not in result.headers
    no_token = {ACCESS_KEY: (SECRET_KEY, None)}
    headers = WireHeaders(result.headers)
    assert verify_sigv4("POST", "/model/m.x-v1:0/converse", headers, result.body, no_token) is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "providers.aws.options.region: required"),
        ({"region": "mars"}, "providers.aws.options.region: 'mars' is not an AWS region name"),
        ({"region": "us-east-1", "colour": "red"}, "providers.aws.options.colour: unknown"),
        ({"region": "us-east-1", "access_key_id": "A"}, "providers.aws.options.secret_access_key"),
        ({"region": "us-east-1", "secret_access_key": "S"}, "providers.aws.options.access_key_id"),
        ({"region": "us-east-1", "session_token": "T"}, "providers.aws.options.session_token"),
        ({"region": "us-east-1", "access_key_id": ""}, "providers.aws.options.access_key_id"),
        (
            {"region": "us-east-1", "profile": "p", "access_key_id": "A", "secret_access_key": "S"},
            "providers.aws.options.profile",
        ),
    ],
)
def test_check_provider_names_the_bad_key(options: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ADAPTER.check_provider(replace(PROVIDER, options=options))
    assert str(info.value).startswith(message)


def test_options_from_environment_through_the_config_file() -> None:
    raw = {
        "providers": {
            "aws": {
                "kind": "bedrock",
                "options": {
                    "region": "${AWS_TEST_REGION}",
                    "access_key_id": "${AWS_TEST_KEY}",
                    "secret_access_key": "${AWS_TEST_SECRET}",
                },
            }
        }
    }
    env = {
        "AWS_TEST_REGION": "eu-central-1",
        "AWS_TEST_KEY": ACCESS_KEY,
        "AWS_TEST_SECRET": SECRET_KEY,
    }
    provider = parse_config(raw, "test", env).providers["aws"]
    options = ADAPTER.check_provider(provider)
    assert options.secret_access_key.reveal() == SECRET_KEY  # type: ignore[attr-defined]
    both = replace(provider, api_keys=("k",))
    with pytest.raises(ConfigError, match=r"providers\.aws\.api_key"):
        ADAPTER.check_provider(both)
