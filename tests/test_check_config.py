"""`interlock check-config` runs the core's own start-up checks (core/startup.py).

Each config below passes the shared schema but is refused by the core at start-up (an adapter
check or a typed provider option). check-config must refuse it too, with the same message naming
the key and exit code 2; and the core itself, started through the launcher, fails the same way.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.ops import cli
from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[1]
HOP_SECRET = "c" * 40
AZURE = {"kind": "azure", "base_url": "https://res.openai.azure.com", "api_key": "k"}
OPENAI = {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}

# (provider settings, the message the core's start-up gives: checked as a prefix)
CASES: list[tuple[dict[str, Any], str]] = [
    ({"kind": "openia"}, "providers.p.kind: unknown provider kind 'openia'"),
    # An unknown option key, for every adapter kind.
    ({**OPENAI, "options": {"presett": "groq"}}, "providers.p.options.presett: unknown option"),
    ({**AZURE, "options": {"deployment": "d"}}, "providers.p.options.deployment: unknown option"),
    (
        {"kind": "anthropic", "api_key": "k", "options": {"bogus": 1}},
        "providers.p.options.bogus: unknown option",
    ),
    (
        {"kind": "gemini", "api_key": "k", "options": {"region": "x"}},
        "providers.p.options.region: unknown option",
    ),
    (
        {"kind": "bedrock", "options": {"region": "us-east-1", "colour": "red"}},
        "providers.p.options.colour: unknown",
    ),
    ({"kind": "mock", "options": {"delay": 5}}, "providers.p.options.delay: unknown"),
    # Required settings.
    ({"kind": "bedrock"}, "providers.p.options.region: required"),
    ({"kind": "azure", "api_key": "k"}, "providers.p.base_url: required"),
    (
        {"kind": "openai", "options": {"preset": "groq"}},
        "providers.p.api_key: required for preset 'groq'",
    ),
    # Bad values and types.
    ({**OPENAI, "options": {"preset": 3}}, "providers.p.options.preset: expected a string"),
    ({**OPENAI, "options": {"preset": "grok"}}, "providers.p.options.preset: unknown preset"),
    ({**AZURE, "options": {"api_version": 20241021}}, "providers.p.options.api_version: expected"),
    ({**AZURE, "options": {"auth": "oauth"}}, "providers.p.options.auth: expected api-key"),
    (
        {"kind": "anthropic", "api_key": "k", "options": {"default_max_tokens": "many"}},
        "providers.p.options.default_max_tokens: expected a positive integer",
    ),
    (
        {"kind": "gemini", "api_key": "k", "options": {"include_thoughts": "yes"}},
        "providers.p.options.include_thoughts: expected true or false",
    ),
    (
        {"kind": "gemini", "api_key": "k", "options": {"vertex": {"project": "p"}}},
        "providers.p.options.vertex.location: expected a region",
    ),
    (
        {"kind": "bedrock", "options": {"region": "mars"}},
        "providers.p.options.region: 'mars' is not an AWS region name",
    ),
    ({"kind": "mock", "options": {"delay_ms": "slow"}}, "providers.p.options.delay_ms: expected"),
]


def write_config(tmp_path: Path, provider: dict[str, Any]) -> Path:
    raw = {
        "state_dir": str(tmp_path / "state"),
        "hop": {"secret": HOP_SECRET},
        "providers": {"p": provider},
        "models": {"m": {"provider": "p", "model": "some-model"}},
    }
    path = tmp_path / "interlock.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def start_core(path: Path) -> subprocess.CompletedProcess[str]:
    """The core started through the one launcher with `path`: expected to refuse and exit."""
    ports = ["--port", str(free_port()), "--admin-port", str(free_port())]
    return subprocess.run(
        [sys.executable, "-m", "shared.server", "core", "--config", str(path), *ports],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def check_config(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(["--config", str(path), "check-config"])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("provider", "message"), CASES, ids=[m for _, m in CASES])
def test_check_config_refuses_what_the_core_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], provider: dict[str, Any], message: str
) -> None:
    path = write_config(tmp_path, provider)
    code, err = check_config(path, capsys)
    assert code == 2, err
    assert err.startswith(f"interlock: {message}"), err
    # The core, started through the one launcher with the same file, fails the same way.
    core = start_core(path)
    assert core.returncode == 2, core.stderr
    assert f"interlock: {message}" in core.stderr, core.stderr
    assert err.strip() in core.stderr  # the very same line


VALID: list[dict[str, Any]] = [
    {"kind": "mock", "options": {"delay_ms": 5}},
    {**OPENAI, "options": {"preset": "vllm"}},
    {**AZURE, "options": {"api_version": "2024-10-21", "auth": "bearer"}},
    {"kind": "anthropic", "api_key": "k", "options": {"beta": ["x"], "default_max_tokens": 9}},
    {
        "kind": "gemini",
        "api_key": "k",
        "options": {"vertex": {"project": "p", "location": "global"}},
    },
    {"kind": "bedrock", "options": {"region": "eu-west-1", "profile": "dev"}},
]


@pytest.mark.parametrize("provider", VALID, ids=[p["kind"] for p in VALID])
def test_check_config_approves_valid_providers_without_opening_a_socket(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    provider: dict[str, Any],
) -> None:
    path = write_config(tmp_path, provider)

    def no_socket(*args: object, **kwargs: object) -> socket.socket:
        raise AssertionError("check-config opened a socket")

    monkeypatch.setattr(socket, "socket", no_socket)
    code, err = check_config(path, capsys)
    assert code == 0, err


def test_check_config_reports_a_missing_hop_secret_as_the_core_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INTERLOCK_HOP_SECRET", raising=False)
    path = tmp_path / "interlock.yaml"
    raw = {"state_dir": str(tmp_path / "empty"), "providers": {"p": {"kind": "mock"}}}
    path.write_text(yaml.safe_dump(raw))
    code, err = check_config(path, capsys)
    assert code == 2
    assert err.startswith("interlock: hop.secret: not set"), err


def test_check_config_refuses_a_redis_url_the_store_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The lean Redis client reads the URL as redis-py does and refuses what it cannot honour;
    check-config says so before a deployment, in the same words as the core."""
    path = write_config(tmp_path, {"kind": "mock"})
    raw = yaml.safe_load(path.read_text())
    raw["state"] = {"redis_url": "redis://127.0.0.1:6399/0?health_check_interval=5"}
    path.write_text(yaml.safe_dump(raw))
    code, err = check_config(path, capsys)
    assert code == 2, err
    assert err.startswith("interlock: state.redis_url: redis URL parameter not supported"), err
    core = start_core(path)
    assert core.returncode == 2, core.stderr
    assert err.strip() in core.stderr
