"""Issue 8: provider keys and AWS secrets never show in a repr, a log line or a traceback.

They are wrapped in shared.secret.Secret when the config is loaded and revealed only where a
request is built or signed; these tests look where a leak would surface: reprs of the loaded
config, a target, a key pool, an error, and a traceback logged with its frames' locals.
"""

from __future__ import annotations

import asyncio
import io
import logging
import traceback
from pathlib import Path

import orjson

from core.providers.adapters.base import Target, UpstreamRequest
from core.providers.adapters.gemini.token_file import TokenFileSigner
from core.providers.adapters.openai_compat import ADAPTER as OPENAI
from core.providers.scrub import sanitize
from core.resilience.key_pools import KeyPool
from shared.config import Config, parse_config
from tests.support.providers import provider_of

OPENAI_KEY = "sk-live-reprtest-0001"
POOL_KEYS = ("pool-key-alpha-0002", "pool-key-beta-0003")
AWS_SECRET = "aws/secret+access+key+0004"
AWS_TOKEN = "aws-session-token-0005"
VERTEX_TOKEN = "ya29.vertex-token-0006"
MATERIAL = (OPENAI_KEY, *POOL_KEYS, AWS_SECRET, AWS_TOKEN, VERTEX_TOKEN)


def _config() -> Config:
    raw = {
        "providers": {
            "oai": {"kind": "openai", "api_key": "${OPENAI_TEST_KEY}"},
            "pool": {"kind": "openai", "api_keys": list(POOL_KEYS)},
            "aws": {
                "kind": "bedrock",
                "options": {
                    "region": "us-east-1",
                    "access_key_id": "AKIAREPRTEST0000",
                    "secret_access_key": AWS_SECRET,
                    "session_token": AWS_TOKEN,
                },
            },
        },
        "models": {"m": {"provider": "oai", "model": "gpt"}},
    }
    return parse_config(raw, "test", {"OPENAI_TEST_KEY": OPENAI_KEY})


def _clean(text: str) -> bool:
    return not any(secret in text for secret in MATERIAL)


def test_config_target_and_key_pool_reprs_hold_no_key() -> None:
    config = _config()
    assert _clean(repr(config)) and _clean(str(config))
    oai, pool = config.providers["oai"], config.providers["pool"]
    target = Target(provider_of(oai), "gpt", oai.api_keys[0])
    assert _clean(repr(target))
    key_pool = KeyPool(pool)
    assert _clean(repr(vars(key_pool)))
    # ...while the wire still gets the real key.
    assert OPENAI.build_request({"model": "gpt", "messages": []}, target).headers[
        "authorization"
    ] == (f"Bearer {OPENAI_KEY}")


def test_a_provider_error_that_echoed_the_key_holds_no_key() -> None:
    provider = _config().providers["oai"]
    target = Target(provider_of(provider), "gpt", provider.api_keys[0])
    body = orjson.dumps({"error": {"message": f"bad key {OPENAI_KEY} for org", "type": "x"}})
    error = sanitize(OPENAI.parse_error(400, {}, body), target)
    error.target = target
    assert _clean(repr(error)) and _clean(str(error)) and _clean(repr(vars(error)))
    assert _clean(error.openai_body().decode())


def test_a_vertex_token_is_held_as_a_secret(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(VERTEX_TOKEN)
    signer = TokenFileSigner(str(token_file))
    request = asyncio.run(signer.sign(UpstreamRequest("POST", "https://x", {}, b"")))
    assert request.headers["authorization"] == f"Bearer {VERTEX_TOKEN}"
    assert _clean(repr(vars(signer)))


def test_a_traceback_logged_with_locals_holds_no_key() -> None:
    config = _config()
    provider = config.providers["pool"]
    target = Target(provider_of(provider), "gpt", provider.api_keys[1])

    def failing_call(target: Target) -> None:
        headers = {"note": "built"}  # noqa: F841 - a local the traceback will show
        raise RuntimeError("adapter blew up")

    stream = io.StringIO()
    log = logging.getLogger("interlock.test.secrets")
    handler = logging.StreamHandler(stream)
    log.addHandler(handler)
    try:
        try:
            failing_call(target)
        except RuntimeError as exc:
            frames = traceback.TracebackException.from_exception(exc, capture_locals=True)
            log.error("request failed:\n%s", "".join(frames.format()))
            log.exception("request failed for %r with %r", target, config)
    finally:
        log.removeHandler(handler)
    written = stream.getvalue()
    assert "adapter blew up" in written and "target" in written
    assert _clean(written)
