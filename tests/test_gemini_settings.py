"""Provider options for kind gemini: start-up validation and the Vertex token-file signer."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from core.providers.adapters.base import ProviderError, UpstreamRequest
from core.providers.adapters.gemini import ADAPTER
from core.providers.adapters.gemini.token_file import TokenFileSigner
from shared.config import ProviderConfig, parse_config
from shared.configparse import ConfigError
from shared.errors import FailureClass


def provider(options: Any, base_url: str | None = None) -> ProviderConfig:
    return ProviderConfig("g", "gemini", base_url, ("k",), {}, None, False, options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"region": "x"}, "providers.g.options.region: unknown option"),
        ({"vertex": "proj"}, "providers.g.options.vertex: expected a mapping"),
        ({"vertex": {"location": "us-central1"}}, "providers.g.options.vertex.project:"),
        ({"vertex": {"project": "p"}}, "providers.g.options.vertex.location:"),
        (
            {"vertex": {"project": "p/../x", "location": "us-central1"}},
            "providers.g.options.vertex.project:",
        ),
        (
            {"vertex": {"project": "p", "location": "us central"}},
            "providers.g.options.vertex.location:",
        ),
        (
            {"vertex": {"project": "p", "location": "global", "zone": "a"}},
            "providers.g.options.vertex.zone: unknown option",
        ),
        (
            {"vertex": {"project": "p", "location": "global", "token_file": ""}},
            "providers.g.options.vertex.token_file:",
        ),
        ({"api_version": "beta"}, "providers.g.options.api_version:"),
        ({"safety_settings": {"x": 1}}, "providers.g.options.safety_settings:"),
        ({"safety_settings": [{"category": "X"}]}, "providers.g.options.safety_settings[0]:"),
        ({"include_thoughts": "yes"}, "providers.g.options.include_thoughts:"),
    ],
)
def test_bad_options_name_the_key(options: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ADAPTER.check_provider(provider(options))
    assert str(caught.value).startswith(message)


def test_good_options_pass_and_full_config_loads(tmp_path: Path) -> None:
    ADAPTER.check_provider(
        provider(
            {
                "vertex": {"project": "my-proj-1", "location": "global", "token_file": "/t"},
                "api_version": "v1beta1",
                "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "OFF"}],
                "include_thoughts": True,
            }
        )
    )
    config = parse_config(
        {
            "state_dir": str(tmp_path),
            "providers": {
                "gemini": {"kind": "gemini", "api_key": "${GEMINI_API_KEY}"},
                "vertex": {
                    "kind": "gemini",
                    "api_key": "${VERTEX_TOKEN}",
                    "options": {"vertex": {"project": "p", "location": "us-central1"}},
                },
            },
            "models": {"flash": {"provider": "gemini", "model": "gemini-2.5-flash"}},
        },
        "test",
        {"GEMINI_API_KEY": "AIza-1", "VERTEX_TOKEN": "ya29.t"},
    )
    for prov in config.providers.values():
        ADAPTER.check_provider(prov)
    assert ADAPTER.make_signer(ADAPTER.check_provider(config.providers["vertex"])) is None


def test_token_file_signer_reads_and_follows_the_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("ya29.first\n")
    prov = provider({"vertex": {"project": "p", "location": "global", "token_file": str(token)}})
    signer = ADAPTER.make_signer(ADAPTER.check_provider(prov))
    assert isinstance(signer, TokenFileSigner)

    async def sign() -> str:
        request = UpstreamRequest("POST", "http://x", {"authorization": "Bearer k"}, b"")
        return (await signer.sign(request)).headers["authorization"]

    async def scenario() -> list[str]:
        seen = [await sign()]
        token.write_text("ya29.second\n")
        stat = token.stat()
        os.utime(token, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        signer._recheck_s = 0  # the recheck interval is a cache, not behaviour under test
        seen.append(await sign())
        token.unlink()  # a refresher briefly replacing the file: keep the last good token
        seen.append(await sign())
        return seen

    assert asyncio.run(scenario()) == [
        "Bearer ya29.first",
        "Bearer ya29.second",
        "Bearer ya29.second",
    ]


def test_token_file_missing_at_first_use_is_an_auth_failure(tmp_path: Path) -> None:
    signer = TokenFileSigner(str(tmp_path / "absent"))
    request = UpstreamRequest("POST", "http://x", {}, b"")
    with pytest.raises(ProviderError) as caught:
        asyncio.run(signer.sign(request))
    assert caught.value.failure_class is FailureClass.AUTH
    assert caught.value.status == 502
