"""Invalid config fails at start-up with a message naming the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import ConfigError, load_config
from shared.config_ledger import parse_ledger

BASE = """
providers:
  mock: {kind: mock}
models:
  m1: {provider: mock}
"""


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    path = tmp_path / "interlock.yaml"
    path.write_text(text)
    return load_config(path, env=env or {})


@pytest.mark.parametrize(
    "text,key",
    [
        (BASE + "auth: {max_ttl: soon}\n", "auth.max_ttl"),
        (BASE + "auth: {algorithm: RS256}\n", "auth.algorithm"),
        (BASE + "edge: {port: 99999}\n", "edge.port"),
        (BASE + "edge: {pools: {default: [ftp://x]}}\n", "edge.pools.default"),
        (BASE + "edge: {routes: [{models: ['*'], pool: nope}]}\n", "edge.routes[0].pool"),
        (BASE + "core: {max_body_bytes: lots}\n", "core.max_body_bytes"),
        (BASE + "core: {resilience: {max_event_bytes: 1KiB}}\n", "core.resilience.max_event_bytes"),
        (BASE + "core: {resilience: {max_event_bytes: huge}}\n", "core.resilience.max_event_bytes"),
        (BASE + "aliases: {fast: missing}\n", "aliases.fast"),
        (BASE + "aliases: {'my model': m1}\n", "aliases.my model"),  # unreachable by clients
        ("providers: {p: {kind: mock}}\nmodels: {'a/../b': {provider: p}}\n", "models.a/../b"),
        (BASE + "core: {server: {tls_cert_file: /nonexistent.pem}}\n", "core.server.tls_cert_file"),
        (BASE + "hop: {secret: short}\n", "hop.secret"),
        ("providers: {p: {kind: openai, base_url: not-a-url}}\n", "providers.p.base_url"),
        ("providers: {p: {kind: mock, colour: red}}\n", "providers.p.colour"),
        ("providers: {p: {base_url: 'http://x'}}\n", "providers.p.kind"),
        ("providers: {p: {kind: mock}}\nmodels: {m: {provider: q}}\n", "models.m.provider"),
        ("providers: {p: {kind: mock}}\nmodels: {m: {targets: []}}\n", "models.m.targets"),
        (
            "providers: {p: {kind: mock}}\nmodels: {m: {targets: [{provider: p, wat: 1}]}}\n",
            "models.m.targets[0].wat",
        ),
        (BASE + "unknown_section: {}\n", "config.unknown_section"),
        ("models: {}\n", "providers"),
    ],
)
def test_bad_key_is_named(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert str(info.value).startswith(key), str(info.value)


def test_env_interpolation(tmp_path: Path) -> None:
    text = """
providers:
  up: {kind: openai, base_url: "${UP_URL:-http://127.0.0.1:9/v1}", api_key: "${UP_KEY}"}
models:
  m: {provider: up, model: real-name}
"""
    config = load(tmp_path, text, {"UP_KEY": "sk-from-env"})
    assert [k.reveal() for k in config.providers["up"].api_keys] == ["sk-from-env"]
    assert config.providers["up"].base_url == "http://127.0.0.1:9/v1"
    assert config.models["m"].targets[0].model == "real-name"


def test_missing_env_var_names_key_and_variable(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"^providers\.up\.api_key: environment variable UP_KEY is not set"
    ):
        load(
            tmp_path,
            "providers: {up: {kind: openai, base_url: 'http://x', api_key: '${UP_KEY}'}}\n",
        )


def test_durations_and_sizes(tmp_path: Path) -> None:
    config = load(
        tmp_path, BASE + "auth: {max_ttl: 15m, leeway: 250ms}\nedge: {max_body_bytes: 2MiB}\n"
    )
    assert config.auth.max_ttl_s == 900 and config.auth.leeway_s == 0.25
    assert config.edge.max_body_bytes == 2 * 1024 * 1024


def test_embedded_defaults_add_providers_with_keys_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.app import create_app

    monkeypatch.setenv("INTERLOCK_HOP_SECRET", "s" * 40)
    assert set(load_config(env={}).providers) == {"mock"}
    env = {
        name: f"key-{name}"
        for name in (
            "OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "GEMINI_API_KEY",
            "MISTRAL_API_KEY",
            "GROQ_API_KEY",
            "DEEPSEEK_API_KEY",
        )
    }
    config = load_config(env=env)
    assert set(config.providers) == {
        "mock",
        "openai",
        "anthropic",
        "gemini",
        "mistral",
        "groq",
        "deepseek",
    }
    assert [k.reveal() for k in config.providers["openai"].api_keys] == ["key-OPENAI_API_KEY"]
    assert config.models["gemini-2.5-flash"].targets[0].provider == "gemini"
    create_app(config)  # every adapter accepts its embedded settings


def test_core_rejects_unknown_provider_kind_at_start_up(tmp_path: Path) -> None:
    from core.app import create_app

    config = load(
        tmp_path, "providers: {p: {kind: carrier-pigeon}}\nhop: {secret: " + "s" * 40 + "}\n"
    )
    with pytest.raises(ConfigError, match=r"^providers\.p\.kind: unknown provider kind"):
        create_app(config)


def test_core_state_and_limits_sections(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        BASE
        + "core: {image_max_bytes: 1MiB, image_fetch_timeout: 2s,"
        + " image_allow_private_networks: true}\n"
        + "state: {redis_url: 'redis://127.0.0.1:1/0', on_redis_down: fail_closed}\n"
        + "limits: {tiers: {free: {rpm: 5}}, tenants: {acme: {tpm: 100}}}\n",
    )
    assert config.core.image_max_bytes == 1024 * 1024 and config.core.image_allow_private_networks
    assert config.state.redis_url == "redis://127.0.0.1:1/0" and not config.state.fail_open
    assert config.limits.for_caller("acme", "free").tpm == 100  # type: ignore[union-attr]
    assert config.limits.for_caller("other", "free").rpm == 5  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match=r"^state\.on_redis_down"):
        load(tmp_path, BASE + "state: {on_redis_down: maybe}\n")
    with pytest.raises(ConfigError, match=r"^limits\.tiers\.free\.rpm"):
        load(tmp_path, BASE + "limits: {tiers: {free: {rpm: 0}}}\n")


def test_the_documented_example_config_is_valid() -> None:
    """infra/interlock.example.yaml is what users copy: it must load and build a core."""
    from core.app import create_app

    example = Path(__file__).resolve().parents[1] / "infra" / "interlock.example.yaml"
    keys = ("OPENAI", "ANTHROPIC", "GEMINI", "DEEPSEEK", "MISTRAL", "GROQ")  # its providers
    env = {"INTERLOCK_HOP_SECRET": "s" * 40, **{f"{k}_API_KEY": "sk-x" for k in keys}}
    config = load_config(example, env=env)
    assert config.models["gpt-4o-mini"].tiers["free"][0].provider == "mock"
    assert config.routing.rules  # the example policy (tests/test_example_policy_e2e.py)
    create_app(config)


def test_the_ledger_section_defaults_to_sqlite_under_the_state_dir_and_names_bad_keys(
    tmp_path: Path,
) -> None:
    ledger = parse_ledger(None, tmp_path)
    assert ledger.enabled and ledger.url == f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    assert ledger.spill_dir == str(tmp_path / "ledger-spill")
    secret = parse_ledger({"url": "postgresql://u:hunter2@db/x"}, tmp_path)
    assert "hunter2" not in repr(secret)
    for raw, key in [
        ({"url": "mysql://db"}, "ledger.url"),
        ({"partition": "week"}, "ledger.partition"),
        ({"retention": "2h"}, "ledger.retention"),
        ({"flush_interval": "0s"}, "ledger.flush_interval"),
        ({"queue_max": 0}, "ledger.queue_max"),
        ({"batch_sise": 10}, "ledger.batch_sise"),
    ]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            parse_ledger(raw, tmp_path)
