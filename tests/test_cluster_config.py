"""`state.cluster`: the switch that makes `state.redis_url` a Redis Cluster seed, and what
check-config refuses for it (in the core's words, before a deployment)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shared.config import ConfigError, load_config
from tests.test_check_config import check_config, write_config

BASE = """
hop: {secret: 0123456789abcdef0123456789abcdef}
providers:
  mock: {kind: mock}
models:
  m1: {provider: mock}
"""


def load(tmp_path: Path, state: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "interlock.yaml"
    path.write_text(BASE + state)
    return load_config(path, env={})


def test_the_switch_is_read_and_needs_a_url(tmp_path: Path) -> None:
    config = load(tmp_path, "state: {redis_url: 'rediss://u:p@10.0.0.5:6379', cluster: true}\n")
    assert config.state.cluster and config.state.redis_url == "rediss://u:p@10.0.0.5:6379"
    assert not load(tmp_path, "state: {redis_url: 'redis://127.0.0.1:1/0'}\n").state.cluster
    with pytest.raises(ConfigError, match=r"^state\.cluster: needs state\.redis_url"):
        load(tmp_path, "state: {cluster: true}\n")
    with pytest.raises(ConfigError, match=r"^state\.cluster"):
        load(tmp_path, "state: {redis_url: 'redis://127.0.0.1:1/0', cluster: maybe}\n")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("unix:///run/redis.sock", "a cluster is reached over TCP, not a unix socket"),
        ("redis://127.0.0.1:7000/2", "a Redis Cluster has database 0 only"),
    ],
)
def test_check_config_refuses_a_url_no_cluster_can_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str, message: str
) -> None:
    path = write_config(tmp_path, {"kind": "mock"})
    raw = yaml.safe_load(path.read_text())
    raw["state"] = {"redis_url": url, "cluster": True}
    path.write_text(yaml.safe_dump(raw))
    code, err = check_config(path, capsys)
    assert code == 2, err
    assert err.startswith(f"interlock: state.redis_url: redis URL: {message}"), err
