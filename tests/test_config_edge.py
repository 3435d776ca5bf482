"""The edge's own config loader (shared/config_edge.py: `load_edge_config`).

The edge reads state_dir, auth, hop and edge; the core's sections may be absent and are never
read (nor their ${VARIABLES} resolved); any other top-level key is still refused. The Lambda
bundle's config has no provider, and the edge serves from it through the one launcher.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.config import (
    ConfigError,
    EdgeTierConfig,
    load_config,
    load_edge_config,
    parse_config,
)
from shared.config_edge import parse_edge_config
from tests.support.net import free_port, wait_http

ROOT = Path(__file__).resolve().parents[1]
LAMBDA_CONFIG = ROOT / "infra" / "lambda" / "interlock.edge.yaml"
EXAMPLE = ROOT / "infra" / "interlock.example.yaml"
HOP_SECRET = "e" * 40
JWKS = (
    '{"keys": [{"kty": "EC", "crv": "P-256", "kid": "k", "alg": "ES256", '
    '"x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", '
    '"y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}'
)
EDGE_ONLY: dict[str, Any] = {
    "hop": {"secret": HOP_SECRET},
    "edge": {"pools": {"default": ["http://127.0.0.1:9"]}},
}


def load_edge_config_from(raw: Any, env: dict[str, str] | None = None) -> EdgeTierConfig:
    return parse_edge_config(raw, "test", env or {})


def test_an_edge_only_config_loads_in_the_edge_and_not_as_a_full_config() -> None:
    config = load_edge_config_from(EDGE_ONLY)
    assert config.edge.pools == {"default": ("http://127.0.0.1:9",)}
    assert config.hop.secret == HOP_SECRET
    with pytest.raises(ConfigError, match=r"^providers: required"):
        parse_config(EDGE_ONLY, "test", {})


def test_the_cores_sections_are_not_read_by_the_edge() -> None:
    raw = {
        **EDGE_ONLY,
        # Invalid for the core in every way, and a secret the edge's environment lacks.
        "providers": {"p": {"kind": "nope", "api_key": "${CORE_ONLY_SECRET}", "wat": 1}},
        "models": "not a mapping",
        "aliases": {"a": "missing"},
        "core": {"port": "eighty"},
        "state": {"redis_url": "ftp://x"},
        "limits": {"tiers": 3},
    }
    config = load_edge_config_from(raw)
    assert config.edge.pools == {"default": ("http://127.0.0.1:9",)}
    assert not hasattr(config, "providers")  # nothing of the core's is kept either


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({**EDGE_ONLY, "colour": "red"}, "config.colour"),
        ({**EDGE_ONLY, "auth": {"max_ttl": "soon"}}, "auth.max_ttl"),
        ({**EDGE_ONLY, "hop": {"secret": "short"}}, "hop.secret"),
        ({"edge": {"pools": {"default": ["ftp://x"]}}}, "edge.pools.default"),
        ({"hop": {"secret": "${EDGE_HOP_SECRET}"}}, "hop.secret: environment variable"),
        ("just a string", "config: expected a mapping"),
    ],
)
def test_the_edges_own_sections_are_still_checked(raw: Any, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_edge_config_from(raw)
    assert str(info.value).startswith(key), str(info.value)


def test_a_full_stack_config_loads_in_both_tiers_with_the_same_edge_settings() -> None:
    keys = ("OPENAI", "ANTHROPIC", "GEMINI", "DEEPSEEK", "MISTRAL", "GROQ")  # the example's
    core_env = {"INTERLOCK_HOP_SECRET": HOP_SECRET, **{f"{k}_API_KEY": "sk-core" for k in keys}}
    edge_env = {"INTERLOCK_HOP_SECRET": HOP_SECRET}  # no provider key on the edge
    full = load_config(EXAMPLE, env=core_env)
    edge = load_edge_config(EXAMPLE, env=edge_env)
    assert full.providers  # the core reads everything
    for section in ("state_dir", "auth", "hop", "edge", "source", "secrets"):
        assert getattr(edge, section) == getattr(full, section), section
    with pytest.raises(ConfigError, match=r"OPENAI_API_KEY is not set"):
        load_config(EXAMPLE, env=edge_env)


def test_the_lambda_config_has_no_provider() -> None:
    raw = yaml.safe_load(LAMBDA_CONFIG.read_text())
    assert set(raw) <= {"state_dir", "auth", "hop", "edge", "secrets"}, sorted(raw)


def test_the_edge_starts_from_an_edge_only_config(tmp_path: Path) -> None:
    """The bundled Lambda config, through the launcher as run.sh starts it."""
    jwks = tmp_path / "jwks.json"
    jwks.write_text(JWKS)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "INTERLOCK_CONFIG": str(LAMBDA_CONFIG),
        "INTERLOCK_HOP_SECRET": HOP_SECRET,
        "INTERLOCK_CORE_URL": "http://127.0.0.1:9",
        "INTERLOCK_JWKS_FILE": str(jwks),
    }
    argv = [sys.executable, "-m", "shared.server", "edge", "--port", str(port)]
    process = subprocess.Popen(
        argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60, process=process)
    except RuntimeError:
        _, err = process.communicate(timeout=10)
        pytest.fail(f"the edge did not start: {err.decode(errors='replace')}")
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_core_link_keys_have_defaults_and_read_units() -> None:
    edge = load_edge_config_from(EDGE_ONLY).edge
    assert (edge.core_connect_timeout_s, edge.core_ack_timeout_s) == (3.0, 5.0)
    assert edge.core_response_timeout_s == 630.0 and edge.max_response_bytes == 64 * 1024 * 1024
    assert (edge.replica_eject_after, edge.replica_eject_base_s, edge.replica_eject_max_s) == (
        3,
        10.0,
        300.0,
    )
    keys = {"core_ack_timeout": "500ms", "max_response_bytes": "2MiB", "replica_eject_after": 5}
    raw = {**EDGE_ONLY, "edge": {**EDGE_ONLY["edge"], **keys}}
    edge = load_edge_config_from(raw).edge
    assert (edge.core_ack_timeout_s, edge.max_response_bytes) == (0.5, 2 * 1024 * 1024)
    assert edge.replica_eject_after == 5


@pytest.mark.parametrize(
    ("keys", "named"),
    [
        ({"core_connect_timeout": 0}, "edge.core_connect_timeout"),
        ({"core_ack_timeout": "soon"}, "edge.core_ack_timeout"),
        ({"core_ack_timeout": "400ms"}, "edge.core_ack_timeout"),  # the core may defer its ack
        ({"core_ack_timeout": "10s", "core_response_timeout": "5s"}, "edge.core_response_timeout"),
        ({"replica_eject_after": 0}, "edge.replica_eject_after"),
        ({"replica_eject_base": "1m", "replica_eject_max": "10s"}, "edge.replica_eject_max"),
        ({"max_response_bytes": "lots"}, "edge.max_response_bytes"),
    ],
)
def test_a_bad_core_link_key_is_named(keys: dict[str, Any], named: str) -> None:
    raw = {**EDGE_ONLY, "edge": {**EDGE_ONLY["edge"], **keys}}
    with pytest.raises(ConfigError, match=named):
        load_edge_config_from(raw)
