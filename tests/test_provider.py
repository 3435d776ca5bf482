"""core/providers/provider.py: one Provider per configured provider, built once at start-up.

Each holds its typed, frozen settings, its adapter, a Transport with the adapter's signer and
the provider's timeouts, its Upstream and its keys as Secrets; the targets the registry hands
out carry that very object. Sending is checked on a real socket (a tiny aiohttp server on
127.0.0.1): what a Provider's transport puts on the wire is what start-up configured.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from core.providers.adapters.base import ProviderError, Target, UpstreamRequest
from core.providers.adapters.bedrock.options import BedrockOptions
from core.providers.client import ProviderClient
from core.providers.mock import MockOptions, MockUpstream
from core.providers.provider import Provider, build_provider
from core.providers.upstream import HttpUpstream
from core.startup import no_session, prepare_core
from shared.config import ConfigError, ProviderConfig, parse_config
from shared.errors import FailureClass
from tests.support.net import free_port

SECRET = "aws/secret+provider+test+0001"
KEY = "sk-provider-test-0002"
RAW: dict[str, Any] = {
    "hop": {"secret": "s" * 40},
    "providers": {
        "oai": {"kind": "openai", "api_key": KEY, "allow_any_model": True, "timeout": "30s"},
        "aws": {
            "kind": "bedrock",
            "options": {
                "region": "eu-west-1",
                "access_key_id": "AKIAPROVIDERTEST",
                "secret_access_key": SECRET,
            },
        },
        "mock": {"kind": "mock", "options": {"delay_ms": 5, "chunk_delay_ms": 1}},
    },
    "models": {"m": {"targets": [{"provider": "oai", "model": "gpt"}, {"provider": "aws"}]}},
}


def built() -> dict[str, Provider]:
    return prepare_core(parse_config(RAW, "test", {}), no_session).providers


def test_one_provider_per_configured_provider_with_its_parts() -> None:
    providers = built()
    assert set(providers) == {"oai", "aws", "mock"}
    oai, aws, mock = providers["oai"], providers["aws"], providers["mock"]
    assert (oai.name, oai.kind, oai.timeout_s, oai.allow_any_model) == ("oai", "openai", 30, True)
    assert [k.reveal() for k in oai.api_keys] == [KEY]
    assert oai.adapter is not None and oai.adapter.kind == "openai"
    assert isinstance(oai.upstream, HttpUpstream) and oai.upstream.adapter is oai.adapter
    assert isinstance(aws.settings, BedrockOptions) and aws.settings.region == "eu-west-1"
    assert aws.adapter is not None and aws.adapter.kind == "bedrock"
    # The mock is a provider like the others: typed options, its own in-process upstream.
    assert mock.adapter is None and isinstance(mock.upstream, MockUpstream)
    assert mock.settings == MockOptions(delay_ms=5, chunk_delay_ms=1)
    assert (mock.upstream.delay_s, mock.upstream.chunk_delay_s) == (0.005, 0.001)


def test_targets_carry_the_provider_built_at_start_up() -> None:
    parts = prepare_core(parse_config(RAW, "test", {}), no_session)
    route = parts.registry.resolve("m")
    assert route is not None
    oai, aws = (c.target.provider for c in route.candidates)
    assert oai is parts.providers["oai"] and aws is parts.providers["aws"]
    assert [c.upstream for c in route.candidates] == [oai.upstream, aws.upstream]
    dynamic = parts.registry.resolve("oai/any-model")
    assert dynamic is not None and dynamic.candidates[0].target.provider is oai


def test_credentials_are_secrets_and_raw_options_stay_out_of_reprs() -> None:
    config = parse_config(RAW, "test", {})
    assert SECRET not in repr(config.providers["aws"])  # options are left out of the repr
    aws = built()["aws"]
    assert isinstance(aws.settings, BedrockOptions)
    assert aws.settings.secret_access_key is not None
    assert aws.settings.secret_access_key.reveal() == SECRET
    assert not hasattr(aws, "options")  # the raw mapping does not outlive start-up
    for text in (repr(aws), repr(Target(aws, "m", None)), repr(built()["oai"])):
        assert SECRET not in text and KEY not in text


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"delay": 5}, r"^providers\.mock\.options\.delay: unknown option"),
        ({"delay_ms": -1}, r"^providers\.mock\.options\.delay_ms: expected a non-negative"),
        ({"chunk_delay_ms": "x"}, r"^providers\.mock\.options\.chunk_delay_ms: expected"),
    ],
)
def test_mock_options_are_typed_and_checked_naming_the_key(
    options: dict[str, Any], message: str
) -> None:
    config = ProviderConfig("mock", "mock", None, (), {}, None, False, options)
    with pytest.raises(ConfigError, match=message):
        build_provider(config, parse_config(RAW, "test", {}).core, no_session)


def test_an_unknown_kind_is_refused_naming_the_key() -> None:
    raw = {**RAW, "providers": {**RAW["providers"], "odd": {"kind": "odd"}}}
    with pytest.raises(ConfigError, match=r"^providers\.odd\.kind: unknown provider kind"):
        prepare_core(parse_config(raw, "test", {}), no_session)


# --- the transport a Provider carries, on a real socket ---


async def echo_auth(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"authorization": request.headers.get("authorization", "")})


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(4)
    return web.Response(body=b"late")


@asynccontextmanager
async def server() -> AsyncIterator[str]:
    application = web.Application()
    application.router.add_post("/model/{model}/converse", echo_auth)
    application.router.add_post("/chat/completions", slow)
    runner = web.AppRunner(application)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def through(raw: dict[str, Any], name: str, send: Callable[[Provider], Awaitable[Any]]) -> Any:
    """Builds `name` from `raw` with a real session and runs `send` with it."""

    async def main() -> Any:
        async with ProviderClient(8) as session:
            parts = prepare_core(parse_config(raw, "test", {}), lambda: session)
            return await send(parts.providers[name])

    return asyncio.run(main())


def with_base_url(url: str, **extra: Any) -> dict[str, Any]:
    providers = {
        "aws": {**RAW["providers"]["aws"], "base_url": url},
        "oai": {"kind": "openai", "api_key": KEY, "base_url": url, **extra},
    }
    return {**RAW, "providers": providers, "models": {}}


def test_the_transport_signs_with_the_adapters_signer() -> None:
    async def send(provider: Provider) -> bytes:
        target = Target(provider, "amazon.nova-micro-v1:0", None)
        assert provider.adapter is not None
        request = provider.adapter.build_request({"messages": []}, target)
        _, body = await provider.transport.fetch(request, target, provider.adapter.parse_error)
        return body

    async def run() -> bytes:
        async with server() as url:
            return await asyncio.to_thread(through, with_base_url(url), "aws", send)

    body = asyncio.run(run())
    assert b"AWS4-HMAC-SHA256 Credential=AKIAPROVIDERTEST/" in body


def test_the_transport_has_the_providers_total_timeout() -> None:
    async def send(provider: Provider) -> float:
        target = Target(provider, "m", provider.api_keys[0])
        assert provider.base_url is not None
        request = UpstreamRequest("POST", f"{provider.base_url}/chat/completions", {}, b"{}")
        assert provider.adapter is not None
        started = time.monotonic()
        with pytest.raises(ProviderError) as info:
            await provider.transport.fetch(request, target, provider.adapter.parse_error)
        assert info.value.failure_class is FailureClass.TIMEOUT
        return time.monotonic() - started

    async def run() -> float:
        async with server() as url:
            raw = with_base_url(url, timeout="200ms")
            return await asyncio.to_thread(through, raw, "oai", send)

    # 0.2 s plus the transport's 1 s margin behind the dispatcher's clock; the server takes 4.
    assert asyncio.run(run()) < 3.5
