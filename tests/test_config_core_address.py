"""The edge's default pool follows the core's configured address (issue 18, item 1).

With no `edge.pools`, the edge relays to where the core listens, resolved by the one rule the
core binds with (shared.config_edge.core_address): `core.host`/`core.port` from the file, else
$INTERLOCK_CORE_HOST/$INTERLOCK_CORE_PORT, else 127.0.0.1:8081; $INTERLOCK_CORE_URL and
`edge.pools` override it. Checked on the parsed config and with real processes: an edge whose
environment names another port still reaches the core on the file's non-default port.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from shared.config import ConfigError, load_config, parse_config
from shared.config_edge import parse_edge_config
from tests.support.net import free_port
from tests.support.stack import Stack

HOP = {"secret": "h" * 40}
MOCK: dict[str, Any] = {"providers": {"m": {"kind": "mock"}}}


def default_pool(core: Any, env: dict[str, str]) -> tuple[str, ...]:
    raw: dict[str, Any] = {"hop": HOP} if core is None else {"hop": HOP, "core": core}
    return parse_edge_config(raw, "test", env).edge.pools["default"]


@pytest.mark.parametrize(
    ("core", "env", "url"),
    [
        (None, {}, "http://127.0.0.1:8081"),
        ({"port": 9123}, {}, "http://127.0.0.1:9123"),
        # The file wins over the environment, as it does for the core's own listener.
        ({"port": 9123}, {"INTERLOCK_CORE_PORT": "7000"}, "http://127.0.0.1:9123"),
        (None, {"INTERLOCK_CORE_PORT": "7000"}, "http://127.0.0.1:7000"),
        ({"host": "10.0.0.5"}, {"INTERLOCK_CORE_HOST": "10.9.9.9"}, "http://10.0.0.5:8081"),
        (None, {"INTERLOCK_CORE_HOST": "10.9.9.9"}, "http://10.9.9.9:8081"),
        ({"port": "${CORE_PORT}"}, {"CORE_PORT": "9300"}, "http://127.0.0.1:9300"),
        # A wildcard listen address is reached on loopback; IPv6 is bracketed.
        ({"host": "0.0.0.0", "port": 9400}, {}, "http://127.0.0.1:9400"),
        ({"host": "::"}, {}, "http://[::1]:8081"),
        ({"host": "fd00::5"}, {}, "http://[fd00::5]:8081"),
        # A core serving TLS is reached over https.
        ({"port": 9443, "server": {"tls_cert_file": "/x.pem"}}, {}, "https://127.0.0.1:9443"),
        # An explicit core URL wins over everything but edge.pools.
        ({"port": 9123}, {"INTERLOCK_CORE_URL": "https://core.internal"}, "https://core.internal"),
    ],
)
def test_the_default_pool_is_where_the_core_listens(
    core: Any, env: dict[str, str], url: str
) -> None:
    assert default_pool(core, env) == (url,)


@pytest.mark.parametrize(
    "core",
    [{"port": 9123}, {"port": 9300, "host": "0.0.0.0"}, None],
)
def test_edge_and_core_resolve_the_same_port(core: Any) -> None:
    env = {"INTERLOCK_CORE_PORT": "7000"}
    raw = {"hop": HOP, **MOCK, **({"core": core} if core else {})}
    config = parse_config(raw, "test", env)
    assert config.edge.pools["default"][0].endswith(f":{config.core.port}")


def test_only_the_cores_address_is_read_and_only_when_needed() -> None:
    # The rest of `core` is the core's: an unset variable there does not stop the edge.
    core = {"port": 9123, "upstream_timeout": "${ONLY_ON_THE_CORE}"}
    assert default_pool(core, {}) == ("http://127.0.0.1:9123",)
    # With edge.pools set, not even host and port are read.
    raw = {"hop": HOP, "core": {"port": "eighty"}, "edge": {"pools": {"a": ["http://c:1"]}}}
    assert parse_edge_config(raw, "test", {}).edge.pools == {"a": ("http://c:1",)}


@pytest.mark.parametrize(
    ("core", "message"),
    [
        ({"port": "eighty"}, r"^core\.port: expected an integer"),
        ({"port": 0}, r"^core\.port: 0 \(any free port\) cannot be followed"),
        ({"host": ""}, r"^core\.host: expected a non-empty string"),
        ({"port": "${UNSET_PORT}"}, r"^core\.port: environment variable UNSET_PORT is not set"),
    ],
)
def test_a_bad_core_address_is_an_error_naming_it(core: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        default_pool(core, {})


def test_a_real_edge_relays_to_a_core_on_the_files_non_default_port(tmp_path: Path) -> None:
    """The file sets core.port (not 8081) and no edge.pools; the edge's environment names
    another port in $INTERLOCK_CORE_PORT, where nothing listens. A chat request through the
    edge (official SDK) is answered by the core: the edge followed the file."""
    stack = Stack(tmp_path)
    raw = yaml.safe_load(stack.config_path.read_text())
    del raw["edge"]["pools"]
    assert raw["core"]["port"] == stack.core_port != 8081
    stack.config_path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    stack.env = {**stack.env, "INTERLOCK_CORE_PORT": str(free_port())}
    stack.env.pop("INTERLOCK_CORE_URL", None)
    edge = load_config(stack.config_path, env=stack.env).edge
    assert edge.pools == {"default": (f"http://127.0.0.1:{stack.core_port}",)}
    stack.start()
    try:
        client = openai.OpenAI(base_url=f"{stack.edge_url}/v1", api_key=stack.token())
        answer = client.chat.completions.create(
            model="mock-1", messages=[{"role": "user", "content": "hello"}]
        )
        assert answer.choices[0].message.content
        assert answer.model == "mock-1"
    finally:
        stack.stop()
