"""`interlock token issue` fails closed (issue 8 finding 8) and secret files are 0600 in a 0700
state dir, even when written over older, wider files (finding 9)."""

from __future__ import annotations

import json
import os
import signal
import stat
from pathlib import Path

import jwt
import pytest
import yaml

from core.ops.cli import main
from core.ops.keys import init_keys
from shared.config import load_config
from tests.support.net import free_port
from tests.support.up import BANNER_END, read_until, start_up, up_env


def config_file(tmp_path: Path, limits: dict[str, object] | None = None) -> Path:
    raw = {
        "state_dir": str(tmp_path / "state"),
        "providers": {"mock": {"kind": "mock"}},
        "limits": limits or {},
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "interlock.yaml"
    path.write_text(yaml.safe_dump(raw))
    init_keys(load_config(path, env={}).auth)
    return path


def issue(path: Path, *args: str) -> int:
    return main(["--config", str(path), "token", "issue", "--tenant", "acme", *args])


def claims_of(output: str) -> dict[str, object]:
    token = output.strip().splitlines()[-1]
    return dict(jwt.decode(token, options={"verify_signature": False}))


@pytest.mark.parametrize("models", ["", " ", ",", " , "])
def test_blank_model_list_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], models: str
) -> None:
    """Old code: an empty --models issued a token for every model."""
    assert issue(config_file(tmp_path), "--models", models) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "--models" in captured.err


def test_unrestricted_token_needs_an_explicit_star(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_file(tmp_path)
    with pytest.raises(SystemExit) as info:  # argparse: --models is required
        issue(path)
    assert info.value.code == 2
    capsys.readouterr()
    assert issue(path, "--models", "*") == 0
    assert claims_of(capsys.readouterr().out)["models"] == ["*"]
    assert issue(path, "--models", "mock-1, gpt-4o*", "--cidrs", "10.0.0.0/8") == 0
    payload = claims_of(capsys.readouterr().out)
    assert payload["models"] == ["mock-1", "gpt-4o*"] and payload["cidrs"] == ["10.0.0.0/8"]


def test_unknown_tier_is_refused_when_tiers_are_configured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Old code: any --tier was signed, and the core then applied no limits at all."""
    path = config_file(tmp_path, {"tiers": {"free": {"rpm": 5}, "paid": {"rpm": 50}}})
    assert issue(path, "--models", "*", "--tier", "gold") == 2
    assert "free, paid" in capsys.readouterr().err
    assert issue(path, "--models", "*") == 2  # the implied "default" tier is not configured
    assert issue(path, "--models", "*", "--tier", "paid") == 0
    assert claims_of(capsys.readouterr().out)["tier"] == "paid"
    with_default = config_file(tmp_path / "d", {"tiers": {"free": {}}, "default_tier": "free"})
    assert issue(with_default, "--models", "*") == 0
    override = config_file(tmp_path / "o", {"tiers": {"free": {}}, "tenants": {"acme": {}}})
    assert issue(override, "--models", "*") == 0  # the tenant's own limits apply
    assert issue(override, "--models", "*", "--tier", "gold") == 2  # still a typo
    unconfigured = config_file(tmp_path / "u")
    assert issue(unconfigured, "--models", "*", "--tier", "anything") == 0


@pytest.mark.parametrize(
    "args",
    [
        ["--tenant", " padded", "--models", "*"],
        ["--tenant", "nul\x00", "--models", "*"],
        ["--tenant", "x" * 257, "--models", "*"],
        ["--tenant", "acme", "--models", "*", "--tier", "t\r"],
        ["--tenant", "acme", "--models", ",".join(f"m{i}" for i in range(257))],
        ["--tenant", "acme", "--models", "*", "--cidrs", "10.0.0.1/8"],
        ["--tenant", "acme", "--models", "*", "--cidrs", ","],
    ],
)
def test_claims_the_edge_would_refuse_are_never_signed(tmp_path: Path, args: list[str]) -> None:
    path = config_file(tmp_path)
    assert main(["--config", str(path), "token", "issue", *args]) == 2


def test_default_tier_must_be_a_configured_tier(tmp_path: Path) -> None:
    from shared.config import ConfigError, parse_config

    raw = {"providers": {"m": {"kind": "mock"}}, "limits": {"tiers": {"free": {}}}}
    with pytest.raises(ConfigError, match=r"limits\.default_tier"):
        parse_config({**raw, "limits": {**raw["limits"], "default_tier": "gold"}}, "t", {})


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_written_over_end_private(tmp_path: Path) -> None:
    """An older version left a 0755 state dir and 0644 secrets: writing over them must not
    keep the old modes (the old code opened them with O_TRUNC, which does)."""
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    for name in ("signing-key.pem", "revocations.json", "jwks.json"):
        (state / name).write_text("old")
        (state / name).chmod(0o644)
    path = tmp_path / "interlock.yaml"
    raw = {"state_dir": str(state), "providers": {"mock": {"kind": "mock"}}}
    path.write_text(yaml.safe_dump(raw))
    (state / "revocations.json").write_text('{"version": 1}')
    assert main(["--config", str(path), "keys", "init", "--force"]) == 0
    assert main(["--config", str(path), "token", "revoke", "--jti", "abc"]) == 0
    assert mode(state) == 0o700
    assert mode(state / "signing-key.pem") == 0o600
    assert mode(state / "revocations.json") == 0o600
    assert mode(state / "jwks.json") == 0o644  # public, and read by the edge
    assert "abc" in json.loads((state / "revocations.json").read_text())["jtis"]
    assert not [p for p in state.iterdir() if p.name.endswith(".tmp")]  # no temp files left


def test_interlock_up_writes_private_state(tmp_path: Path) -> None:
    """`make run` on a directory an older version used: dir 0755, demo token and hop secret
    0644. After start-up all are private (old code: 0755 dir, 0644 demo token)."""
    state = tmp_path / ".interlock"
    state.mkdir()
    state.chmod(0o755)
    for name, text in (("demo-token", "old"), ("hop-secret", "h" * 48)):
        (state / name).write_text(text)
        (state / name).chmod(0o644)
    process = start_up(tmp_path, up_env(free_port()))
    try:
        read_until(process, BANNER_END)
        assert mode(state) == 0o700
        assert mode(state / "demo-token") == 0o600
        assert mode(state / "hop-secret") == 0o600
        assert mode(state / "signing-key.pem") == 0o600
        assert (state / "demo-token").read_text().count(".") == 2  # a fresh JWT, not "old"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
